"""MONAI Label train task: fine-tune the served classifier on the class labels annotators saved in the datastore.

MONAI Label runs a train request in a child process of the server. The task writes the labelled images as the
classification bundle's datalist, runs the bundle's own ``train.yaml`` (``monai.bundle.run``) starting from the
served checkpoint, and publishes the best model atomically at ``<app_dir>/model/<model_name>.pt``, which the infer
task picks up on its next request.
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

from monai_ext.apps.label.bundle_model import overrides_from_checkpoint
from monai_ext.apps.label.datalist import labelled_datalist
from monai_ext.io.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)
#: Request parameters and their defaults (shown to clients by ``/info/``).
#: ``base_lr`` None keeps the bundle's.
TRAIN_DEFAULTS: dict[str, Any] = {"max_epochs": 10, "batch_size": 8, "num_workers": 2, "val_fraction": 0.2, "seed": 0,
                                  "base_lr": None}


class UltrasoundClassifyTrain(TrainTask):
    """Fine-tune on the datastore's labelled images.

    Args:
        bundle_root: the ``usf_mae_classify`` bundle folder.
        served: returns the checkpoint being served now (the published one after a first training).
        published: where the fine-tuned model is published.
        class_names: the served model's classes; labels must name one of them.
        overrides: further bundle settings (the app's ``overrides`` conf).
    """

    def __init__(self, bundle_root: Path, served: Callable[[], Path], published: Path, class_names: list[str],
                 overrides: Mapping[str, Any]) -> None:
        super().__init__(f"Fine-tune on the datastore's class labels ({', '.join(class_names)})")
        self.bundle_root = Path(bundle_root)
        self.served = served
        self.published = Path(published)
        self.class_names = class_names
        self.overrides = dict(overrides)
        self.work = self.published.with_suffix("")  # <app_dir>/model/<model_name>/

    def config(self) -> dict[str, Any]:
        return dict(TRAIN_DEFAULTS)

    def stats(self) -> dict[str, Any]:
        """The last run's summary, if any."""
        path = self.work / "train_stats.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def __call__(self, request: Mapping[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Train, publish and return the run's summary.

        Raises:
            ValueError: a parameter of the wrong type or range, or too few labels per class.
        """
        params = _parameters(request)
        self.work.mkdir(parents=True, exist_ok=True)
        datalist, skipped = labelled_datalist(datastore.datalist(), self.class_names, self.work / "datalist.json",
                                              params["val_fraction"], params["seed"])
        split = json.loads(datalist.read_text())
        start_from = Path(self.served())
        run_dir = self.work / "run"
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: no resume from an older training's files
        self._run_bundle(datalist, start_from, run_dir, params, train_size=len(split["train"]))
        # atomic: the serving process never reads a half-written model
        atomic_write_bytes(self.published, (run_dir / "models" / "model.pt").read_bytes())
        history = json.loads((run_dir / "eval" / "metrics.json").read_text())
        summary = {
            "published": str(self.published),
            "started_from": str(start_from),
            "train": len(split["train"]),
            "validation": len(split["validation"]),
            "skipped_labels": skipped,
            "epochs": len(history),
            "best_val_macro_f1": max(h["val_macro_f1"] for h in history),
        }
        atomic_write_bytes(self.work / "train_stats.json", json.dumps(summary, indent=1).encode())
        logger.info("fine-tuned on %d labelled images: %s", summary["train"], summary)
        return summary

    def _run_bundle(self, datalist: Path, start_from: Path, run_dir: Path, params: Mapping[str, Any],
                    train_size: int) -> None:
        from monai.bundle import run

        configs = self.bundle_root / "configs"
        settings: dict[str, Any] = {
            "meta_file": str(configs / "metadata.json"),
            "logging_file": str(configs / "logging.conf"),
            "bundle_root": str(self.bundle_root),
            "datalist_file": str(datalist),
            "init_checkpoint": str(start_from),
            "ckpt_dir": str(run_dir / "models"),
            "output_dir": str(run_dir / "eval"),
            "cache_dir": str(run_dir / "cache"),
            "epochs": params["max_epochs"],
            # the training loader drops its last partial batch: never ask for more than there are images
            "batch_size": min(params["batch_size"], train_size),
            "num_workers": params["num_workers"],
            # later entries win, as in load_bundle_classifier: the checkpoint's architecture, then the app's conf
            **overrides_from_checkpoint(start_from),
            **self.overrides,
        }
        if params["base_lr"] is not None:
            settings["base_lr"] = params["base_lr"]
        run(config_file=str(configs / "train.yaml"), **settings)


def _parameters(request: Mapping[str, Any]) -> dict[str, Any]:
    """Request values over the defaults, checked."""
    params = {key: request.get(key, default) for key, default in TRAIN_DEFAULTS.items()}
    for key, lowest in (("max_epochs", 1), ("batch_size", 1), ("num_workers", 0), ("seed", 0)):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise ValueError(f"train parameter {key!r} must be an integer of at least {lowest}, got {value!r}")
    base_lr = params["base_lr"]
    if base_lr is not None and (isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or base_lr <= 0):
        raise ValueError(f"train parameter 'base_lr' must be a positive number, got {base_lr!r}")
    if not 0.0 < float(params["val_fraction"]) < 0.5:
        raise ValueError(f"train parameter 'val_fraction' must be in (0, 0.5), got {params['val_fraction']!r}")
    return params
