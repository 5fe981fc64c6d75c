"""ignite event handlers for the engines: checkpointing, metric history, reconstruction grids, reports, MLflow."""

from __future__ import annotations
