"""MONAI Label train task: fine-tune the served segmenter on the masks annotators saved in the datastore.

Masks saved through ``PUT /datastore/label?image=<id>&tag=final`` (PNG label maps, 0/1 or 0/255) become the
segmentation bundle's datalist; the bundle's own ``train.yaml`` runs from the served checkpoint, and the best model
is published atomically at ``<app_dir>/model/<model_name>.pt``, which the infer task loads on its next request.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from monai_ext.apps.label.segment_model import mask_datalist, segmenter_overrides
from monai_ext.apps.label.train import TRAIN_DEFAULTS, _parameters
from monai_ext.io.atomic import atomic_write_bytes


class UltrasoundSegmentTrain(TrainTask):
    """Fine-tune on the datastore's masks.

    Args:
        bundle_root: the ``usf_mae_segment`` bundle folder.
        served: returns the checkpoint served now.
        published: where the fine-tuned model is published.
        class_names: the served model's classes (background first).
        overrides: further bundle settings.
    """

    def __init__(self, bundle_root: Path, served: Callable[[], Path], published: Path, class_names: list[str],
                 overrides: Mapping[str, Any]) -> None:
        super().__init__(f"Fine-tune on the datastore's masks ({', '.join(class_names[1:])})")
        self.bundle_root, self.served, self.published = Path(bundle_root), served, Path(published)
        self.class_names, self.overrides = list(class_names), dict(overrides)
        self.work = self.published.with_suffix("")

    def config(self) -> dict[str, Any]:
        return dict(TRAIN_DEFAULTS)

    def stats(self) -> dict[str, Any]:
        path = self.work / "train_stats.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def __call__(self, request: Mapping[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Train from the served model, publish atomically, return the run's summary."""
        from monai.bundle import run

        params = _parameters(request)
        self.work.mkdir(parents=True, exist_ok=True)
        datalist, skipped = mask_datalist(datastore.datalist(), self.class_names, self.work / "datalist.json",
                                          float(params["val_fraction"]), params["seed"])
        split = json.loads(datalist.read_text())
        start_from, run_dir = Path(self.served()), self.work / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        configs = self.bundle_root / "configs"
        settings: dict[str, Any] = {
            "meta_file": str(configs / "metadata.json"), "logging_file": str(configs / "logging.conf"),
            "bundle_root": str(self.bundle_root), "datalist_file": str(datalist), "init_checkpoint": str(start_from),
            "ckpt_dir": str(run_dir / "models"), "output_dir": str(run_dir / "eval"), "cache_dir": str(run_dir / "cache"),
            "epochs": params["max_epochs"], "batch_size": min(params["batch_size"], len(split["train"])),
            "num_workers": params["num_workers"], **segmenter_overrides(start_from), **self.overrides,
        }
        if params["base_lr"] is not None:
            settings["base_lr"] = params["base_lr"]
        run(config_file=str(configs / "train.yaml"), **settings)
        atomic_write_bytes(self.published, (run_dir / "models" / "model.pt").read_bytes())
        history = json.loads((run_dir / "eval" / "metrics.json").read_text())
        summary = {"published": str(self.published), "started_from": str(start_from), "train": len(split["train"]),
                   "validation": len(split["validation"]), "skipped_labels": skipped, "epochs": len(history),
                   "best_val_mean_dice": max(h["val_mean_dice"] for h in history)}
        atomic_write_bytes(self.work / "train_stats.json", json.dumps(summary, indent=1).encode())
        logging.getLogger(__name__).info("fine-tuned on %d masks: %s", summary["train"], summary)
        return summary
