"""Data: the ultrasound simulator, corpus ingestion, datalists, downstream and segmentation protocols, datasets."""

from __future__ import annotations
