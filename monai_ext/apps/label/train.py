"""MONAI Label train task: fine-tune the served classifier on the class labels annotators saved in the datastore.

The labelled images become the classification bundle's datalist with a stratified validation part; the run and
the atomic publication are :class:`~monai_ext.apps.label.bundle_train.BundleTrainTask`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore

from monai_ext.apps.label.bundle_model import overrides_from_checkpoint
from monai_ext.apps.label.bundle_train import BundleTrainTask
from monai_ext.apps.label.datalist import labelled_datalist
from monai_ext.apps.label.datastore import class_label_items
from monai_ext.apps.label.lineage import Lineage


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
