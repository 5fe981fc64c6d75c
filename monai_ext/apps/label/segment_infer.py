"""MONAI Label infer task: one ultrasound image in, the lesion mask out as the label file.

The result file is a PNG label map (uint8 class indices, 0 background) at the image's own size, what 3D Slicer and
OHIF load as a 2-D segmentation, as in MONAI Label's 2-D endoscopy app; a TIFF carrying the image's pixel size where
ITK, and so 3D Slicer, reads the image with one (:func:`~monai_ext.io.label_maps.itk_pixel_spacing`), as the
bundle's batch inference writes it. The
mask is the segmentation bundle's inference output for the same image
(:class:`~monai_ext.apps.label.segment_model.BundleSegmenter`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from monai_ext.apps.label.segment_model import BundleSegmenter
from monai_ext.apps.label.served import ServedModel
from monai_ext.io.label_maps import itk_pixel_spacing, label_map_suffix, save_label_map

logger = logging.getLogger(__name__)


class UltrasoundSegmentInfer(InferTask):
    """Segment one image with the segmentation bundle's model; reload when a newly published model appears.

    Args:
        load: builds the segmenter from a checkpoint.
        served: returns the checkpoint to serve now (the train task's published model once there is one).
    """

    def __init__(self, load: Callable[[Path], BundleSegmenter], served: Callable[[], Path]) -> None:
        self._served_model = ServedModel(load, served)
        self._served_model.current()  # loaded at start-up: a bad checkpoint stops the server at once
        foreground = self.model.class_names[1:]
        super().__init__(
            type=InferType.SEGMENTATION,
            labels={name: index for index, name in enumerate(self.model.class_names) if index > 0},
            dimension=2,
            description=f"ultrasound lesion segmentation: {', '.join(foreground)}",
            config={},
        )

    @property
    def model(self) -> BundleSegmenter:
        """The model of the served checkpoint (reloaded when a newly published one replaced it)."""
        return self._served_model.current()

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Run on ``request["image"]`` (a local path). Returns (mask file path, per-class pixel counts and fractions).

        The mask file is a PNG, or a TIFF of the image's pixel size in mm where ITK reads one from the image (a
        DICOM's ``PixelSpacing``, a JPEG's or TIFF's dots per inch): 3D Slicer places the image by that size and the
        label map by its own, and a PNG's is always 1 mm, so its mask lay several times the image's size.

        Raises:
            UnreadableImageError: the file is not a decodable image; the app answers HTTP 422.
        """
        start = time.perf_counter()
        mask, summary = self.model.segment(request["image"])
        spacing = itk_pixel_spacing(request["image"], mask.shape)
        # MONAI Label sends the file, then removes it
        handle, mask_file = tempfile.mkstemp(suffix=f"_mask{label_map_suffix(spacing)}")
        os.close(handle)
        save_label_map(mask, Path(mask_file), spacing)
        if spacing is not None:
            summary["pixel_spacing_mm"] = [round(spacing[1], 6), round(spacing[0], 6)]  # (rows, columns) as DICOM
        summary["latency_s"] = round(time.perf_counter() - start, 4)
        logger.info("segmented %s: %s in %.3f s", request["image"], summary["fraction"], summary["latency_s"])
        return mask_file, summary
