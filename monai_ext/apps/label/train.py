"""MONAI Label train task: fine-tune the served classifier on the class labels annotators saved in the datastore.

The labelled images become the classification bundle's datalist with a stratified validation part; the run and
the atomic publication are :class:`~monai_ext.apps.label.bundle_train.BundleTrainTask`'s.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore

from monai_ext.apps.label.bundle_model import overrides_from_checkpoint
from monai_ext.apps.label.bundle_train import BundleTrainTask
from monai_ext.apps.label.datalist import labelled_datalist
from monai_ext.apps.label.datastore import class_label_items
from monai_ext.apps.label.lineage import Lineage
from monai_ext.apps.label.split import SplitMemory, image_identity
from monai_ext.apps.label.train_settings import bundle_train_settings
from monai_ext.engines.metrics import chance_level
from monai_ext.io.atomic import atomic_write_bytes


class UltrasoundClassifyTrain(BundleTrainTask):
    """Fine-tune the ``usf_mae_classify`` bundle on the datastore's labelled images; labels must name a class."""

    metric = "val_macro_f1"
    item = "labelled images"

    def __init__(self, bundle_root: Path, served: Callable[[], Path], published: Path, lineage: Lineage,
                 class_names: list[str], overrides: Mapping[str, Any], device: str | None = None) -> None:
        super().__init__(f"Fine-tune on the datastore's class labels ({', '.join(class_names)})", bundle_root,
                         served, published, lineage, class_names, overrides, device)

    def write_datalist(self, items: Sequence[Mapping[str, str]], out: Path, params: Mapping[str, Any],
                       memory: SplitMemory | None = None) -> tuple[Path, dict[str, str], dict[str, str]]:
        """See :meth:`BundleTrainTask.write_datalist`; a class label is right or skipped, never suspect."""
        return *labelled_datalist(items, self.class_names, out, params["val_fraction"], params["seed"], memory), {}

    def labelled_items(self, datastore: Datastore) -> list[dict[str, Any]]:
        """See :func:`~monai_ext.apps.label.datastore.class_label_items` (class labels apart from masks)."""
        return class_label_items(datastore)

    def checkpoint_overrides(self, checkpoint: Path) -> dict[str, Any]:
        """See :meth:`BundleTrainTask.checkpoint_overrides`."""
        return overrides_from_checkpoint(checkpoint)

    def not_worth_publishing(self, run_dir: Path, datalist: Path, served: Path, params: Mapping[str, Any]) -> str | None:
        """A best model that guesses on the validation part (one class for every image: macro-F1 1/3 on two images,
        which the positive-metric check let through) where the served model tells those images apart; see
        :func:`~monai_ext.engines.metrics.chance_level`. See :meth:`BundleTrainTask.not_worth_publishing`.

        The two are compared on the validation images the served model did not train on: the split keeps each
        image's part across rounds (:mod:`monai_ext.apps.label.split`), so these are all of them where the served
        model is this app's fine-tune, and those its checkpoint's ``trained_images`` do not list otherwise (a score
        on a training image is memory). A model guessing where the served one guesses too is no loss, and it has
        learnt from the annotators' labels: it is published, as it is where too few of the images are new to the
        served model to compare.
        """
        guess = chance_level(json.loads((run_dir / "eval" / "validation_report.json").read_text()), self.class_names)
        if guess is None:
            return None
        log = logging.getLogger(__name__)
        held_out = self.held_out_datalist(datalist, served, run_dir / "held_out.json")
        if held_out is None:
            log.warning("the fine-tuned model guesses on the validation part (%s); the served model trained on too many "
                        "of its images to compare: published", guess)
            return None
        if held_out != datalist:  # the fine-tuned model on the same images as the served one
            guess = chance_level(self.validation_report(run_dir / "models" / "model.pt", held_out,
                                                        run_dir / "held_out", params), self.class_names)
            if guess is None:
                return None
        served_report = self.validation_report(served, held_out, run_dir / "served", params)
        if chance_level(served_report, self.class_names) is not None:
            log.warning("the fine-tuned model guesses on the validation part (%s), as the served model does (balanced "
                        "accuracy %.3g): published, having learnt from the labels", guess,
                        served_report["balanced_accuracy"])
            return None
        return (f"its {guess}, where the served model, which trained on none of them, scores a balanced accuracy of "
                f"{served_report['balanced_accuracy']:.3g}")

    def served_trained_images(self, served: Path) -> set[str]:
        """The real paths of the images the served checkpoint trained or was selected on, as its record gives them
        (empty for a checkpoint without the record: the bundle's own model, trained on other data)."""
        from monai_ext.apps.bundle_support import recorded_trained_images, trained_settings

        record = trained_settings(served, "usf_mae_classify", kinds=["classifier", "external"])
        return recorded_trained_images(record) or set()

    def held_out_datalist(self, datalist: Path, served: Path, out: Path) -> Path | None:
        """``datalist`` with its validation part cut to the images the served model did not train on: ``datalist``
        itself where that is all of them, a copy at ``out`` where it is some, None where fewer than two classes
        remain (nothing to compare)."""
        split = json.loads(datalist.read_text())
        trained, memory = self.served_trained_images(served), self.split_memory(served)
        held_out = [item for item in split["validation"] if not_trained_on(item, trained, memory)]
        if len({item["label"] for item in held_out}) < 2:
            return None
        if len(held_out) == len(split["validation"]):
            return datalist
        atomic_write_bytes(out, json.dumps({**split, "validation": held_out}, indent=1).encode())
        return out

    def validation_report(self, checkpoint: Path, datalist: Path, out: Path,
                          params: Mapping[str, Any]) -> dict[str, Any]:
        """``checkpoint``'s ``validation_report.json`` on ``datalist``'s validation part (the bundle's
        ``evaluate.yaml`` with ``--eval_split validation``), written under ``out``."""
        from monai.bundle import run

        configs = self.bundle_root / "configs"
        settings = bundle_train_settings(self.bundle_root, datalist, checkpoint, out, params, 1, {}, self.overrides,
                                         self.device)
        run(config_file=[str(configs / "train.yaml"), str(configs / "evaluate.yaml")],
            **{**settings, "ckpt_path": str(checkpoint), "eval_split": "validation", "batch_size": params["batch_size"]})
        return json.loads((out / "eval" / "validation_report.json").read_text())


def not_trained_on(item: Mapping[str, Any], trained: set[str], memory: SplitMemory) -> bool:
    """Whether the served model never trained on ``item``'s image: not in its line's training images (``memory``),
    and either validated on only or not in its checkpoint's ``trained_images`` (real paths, ``trained``).

    The checkpoint's record lists its validation images with its training ones, all "seen". An image its line only
    validated on chose the served model's best epoch but gave it no gradient step, and the fine-tune is chosen on it
    too (its part is kept): a score on it is no memory, so it counts as new. Before the split record, every image
    came back to validation from an earlier round's training or validation part, and few were left to compare on.
    """
    identity = image_identity(item)
    if identity in memory.trained:
        return False
    return identity in memory.validation or os.path.realpath(str(item["image"])) not in trained
