"""Engines: MAE, classification and segmentation trainers and evaluators, inference, optimisers, the probe."""

from __future__ import annotations
