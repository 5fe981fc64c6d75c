"""MONAI Label train task: fine-tune the served segmenter on the masks annotators saved in the datastore.

Masks saved through ``PUT /datastore/label?image=<id>&tag=final`` (PNG label maps, 0/1 or 0/255) become the
segmentation bundle's datalist; the run and the atomic publication are
:class:`~monai_ext.apps.label.bundle_train.BundleTrainTask`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_ext.apps.label.bundle_train import BundleTrainTask
from monai_ext.apps.label.lineage import Lineage
from monai_ext.apps.label.segment_model import app_mask_encoding, mask_datalist, segmenter_overrides
from monai_ext.apps.label.split import SplitMemory


class UltrasoundSegmentTrain(BundleTrainTask):
    """Fine-tune the ``usf_mae_segment`` bundle on the datastore's masks (``class_names`` background first)."""

    metric = "val_mean_dice"
    item = "masks"

    def __init__(self, bundle_root: Path, served: Callable[[], Path], published: Path, lineage: Lineage,
                 class_names: list[str], overrides: Mapping[str, Any], device: str | None = None) -> None:
        super().__init__(f"Fine-tune on the datastore's masks ({', '.join(class_names[1:])})", bundle_root, served,
                         published, lineage, class_names, overrides, device)

    def write_datalist(self, items: Sequence[Mapping[str, str]], out: Path, params: Mapping[str, Any],
                       memory: SplitMemory | None = None) -> tuple[Path, dict[str, str], dict[str, str]]:
        """See :meth:`BundleTrainTask.write_datalist`."""
        encoding = app_mask_encoding(self.served(), self.class_names)  # as the bundle will read them
        return mask_datalist(items, self.class_names, out, params["val_fraction"], params["seed"], encoding, memory)

    def checkpoint_overrides(self, checkpoint: Path) -> dict[str, Any]:
        """See :meth:`BundleTrainTask.checkpoint_overrides` (masks in :func:`app_mask_encoding`)."""
        return {**segmenter_overrides(checkpoint), "mask_encoding": app_mask_encoding(checkpoint, self.class_names)}
