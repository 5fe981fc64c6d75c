"""USF-MAE on MONAI: ultrasound foundation-model pretraining, fine-tuning and serving."""

from __future__ import annotations

__version__ = "0.1.0"
