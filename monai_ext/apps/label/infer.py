"""MONAI Label infer task: one ultrasound image (PNG/JPG/BMP/TIFF/DICOM) in, class and per-class scores out.

MONAI Label's ``BasicInferTask`` is built around segmentation (pre/inferer/post transforms and a label writer) and
its ``BundleInferTask`` imports torchvision; a classifier needs neither, so this implements the small ``InferTask``
interface directly and delegates the work to :class:`~monai_ext.apps.label.bundle_model.BundleClassifier`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from monai_ext.apps.bundle_support import as_flag
from monai_ext.apps.label.bundle_model import BundleClassifier
from monai_ext.apps.label.served import ServedModel
from monai_ext.io.figures import save_png

logger = logging.getLogger(__name__)


class UltrasoundClassifyInfer(InferTask):
    """Classify one image with the classification bundle's model and preprocessing.

    The response's JSON (``params``) holds ``label`` (index), ``class`` (name), ``probabilities`` ({name: p}) and
    ``latency_s``. With ``{"heatmap": true}`` in the request params the result file is a Grad-CAM overlay PNG.

    Args:
        load: builds the classifier from a checkpoint.
        served: returns the checkpoint to serve now; when it changes (a train task published a fine-tuned model)
            the next request loads it.
    """

    def __init__(self, load: Callable[[Path], BundleClassifier], served: Callable[[], Path]) -> None:
        self._served_model = ServedModel(load, served)
        self._served_model.current()  # loaded at start-up, so a bad checkpoint stops the server at once
        super().__init__(
            type=InferType.CLASSIFICATION,
            labels={name: index for index, name in enumerate(self.model.class_names)},
            dimension=2,
            description=f"ultrasound classification: {', '.join(self.model.class_names)}",
            config={"heatmap": False},
        )

    @property
    def model(self) -> BundleClassifier:
        """The model of the served checkpoint (reloaded when a newly published one replaced it)."""
        return self._served_model.current()

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """Run on ``request["image"]`` (a local path: MONAI Label saves uploads to a temporary file first).

        Returns:
            (heat-map PNG path or None, result JSON): None without ``{"heatmap": true}``, or for a network without
            ViT blocks, where Grad-CAM has no tokens to weigh.

        Raises:
            UnreadableImageError: the file is not a decodable image; the app turns it into an HTTP 4xx.
            ValueError: ``heatmap`` is not a yes/no word (the app refuses such a request before it gets here).
        """
        start = time.perf_counter()
        model = self.model
        heatmap_file = None
        if as_flag(request.get("heatmap", False), "heatmap"):
            result, overlay = model.predict_and_explain(request["image"])
            if overlay is not None:
                heatmap_file = tempfile.NamedTemporaryFile(suffix="_gradcam.png", delete=False).name
                save_png(overlay, Path(heatmap_file))
        else:
            result = model.predict(request["image"])
        result["latency_s"] = round(time.perf_counter() - start, 4)
        logger.info("classified %s as %s in %.3f s", request["image"], result["class"], result["latency_s"])
        return heatmap_file, result
