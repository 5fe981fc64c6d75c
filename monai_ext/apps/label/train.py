"""MONAI Label train task: fine-tune the served classifier on the class labels annotators saved in the datastore.

The labelled images become the classification bundle's datalist with a stratified validation part; the run and
the atomic publication are :class:`~monai_ext.apps.label.bundle_train.BundleTrainTask`'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore

from monai_ext.apps.label.bundle_model import overrides_from_checkpoint
from monai_ext.apps.label.bundle_train import BundleTrainTask
from monai_ext.apps.label.datalist import labelled_datalist
from monai_ext.apps.label.datastore import class_label_items
from monai_ext.apps.label.lineage import Lineage
from monai_ext.apps.label.train_settings import bundle_train_settings
from monai_ext.engines.metrics import chance_level


class UltrasoundClassifyTrain(BundleTrainTask):
    """Fine-tune the ``usf_mae_classify`` bundle on the datastore's labelled images; labels must name a class."""

    metric = "val_macro_f1"
    item = "labelled images"

    def __init__(self, bundle_root: Path, served: Callable[[], Path], published: Path, lineage: Lineage,
                 class_names: list[str], overrides: Mapping[str, Any], device: str | None = None) -> None:
        super().__init__(f"Fine-tune on the datastore's class labels ({', '.join(class_names)})", bundle_root,
                         served, published, lineage, class_names, overrides, device)

    def write_datalist(self, items: Sequence[Mapping[str, str]], out: Path,
                       params: Mapping[str, Any]) -> tuple[Path, dict[str, str], dict[str, str]]:
        """See :meth:`BundleTrainTask.write_datalist`; a class label is right or skipped, never suspect."""
        return *labelled_datalist(items, self.class_names, out, params["val_fraction"], params["seed"]), {}

    def labelled_items(self, datastore: Datastore) -> list[dict[str, Any]]:
        """See :func:`~monai_ext.apps.label.datastore.class_label_items` (class labels apart from masks)."""
        return class_label_items(datastore)

    def checkpoint_overrides(self, checkpoint: Path) -> dict[str, Any]:
        """See :meth:`BundleTrainTask.checkpoint_overrides`."""
        return overrides_from_checkpoint(checkpoint)

    def not_worth_publishing(self, run_dir: Path, datalist: Path, served: Path, params: Mapping[str, Any]) -> str | None:
        """A best model that guesses on the validation part (one class for every image: macro-F1 1/3 on two images,
        which the positive-metric check let through) where the served model tells those images apart; see
        :func:`~monai_ext.engines.metrics.chance_level`. A model guessing where the served one guesses too is no
        loss, and it has learnt from the annotators' labels: it is published. See
        :meth:`BundleTrainTask.not_worth_publishing`."""
        guess = chance_level(json.loads((run_dir / "eval" / "validation_report.json").read_text()), self.class_names)
        if guess is None:
            return None
        served_report = self.served_validation_report(datalist, served, run_dir / "served", params)
        if chance_level(served_report, self.class_names) is not None:
            logging.getLogger(__name__).warning(
                "the fine-tuned model guesses on the validation part (%s), as the served model does (balanced "
                "accuracy %.3g): published, having learnt from the labels", guess, served_report["balanced_accuracy"])
            return None
        return (f"its {guess}, where the served model scores a balanced accuracy of "
                f"{served_report['balanced_accuracy']:.3g} on the same images")

    def served_validation_report(self, datalist: Path, served: Path, out: Path,
                                 params: Mapping[str, Any]) -> dict[str, Any]:
        """The served checkpoint's ``validation_report.json`` on the run's validation part (the bundle's
        ``evaluate.yaml`` with ``--eval_split validation``), written under ``out``."""
        from monai.bundle import run

        configs = self.bundle_root / "configs"
        settings = bundle_train_settings(self.bundle_root, datalist, served, out, params, 1, {}, self.overrides,
                                         self.device)
        run(config_file=[str(configs / "train.yaml"), str(configs / "evaluate.yaml")],
            **{**settings, "ckpt_path": str(served), "eval_split": "validation", "batch_size": params["batch_size"]})
        return json.loads((out / "eval" / "validation_report.json").read_text())
