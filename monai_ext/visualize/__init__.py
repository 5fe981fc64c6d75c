"""Pictures for people: Grad-CAM heat maps, confusion-matrix and ROC plots, MAE reconstructions."""

from __future__ import annotations
