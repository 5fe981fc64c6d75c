"""Applications built on the layers below: bundle support, the cross-validation runner, the MONAI Label app."""

from __future__ import annotations
