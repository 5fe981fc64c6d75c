"""The MONAI Label app: serves the classification bundle's model to annotators (3D Slicer, OHIF, REST clients) and
fine-tunes it on the class labels they save.

Start it with ``scripts/run_label_server.sh`` (loopback only by default). Settings come as ``--conf key value``:

- ``bundle_root``: the ``usf_mae_classify`` bundle folder (default: the checkout's, or the one installed with the
  package);
- ``checkpoint``: the fine-tuned model (default: ``<bundle_root>/models/model.pt``);
- ``model_name``: the name under ``/infer/<model_name>`` (default ``usf_mae_classifier``);
- ``device``: ``cpu``, ``cuda`` or ``cuda:1`` (default: CUDA when available);
- ``overrides``: JSON of further settings of the classification bundle, e.g. ``'{"precision": "fp32"}'``, for
  serving and fine-tuning the classifier alike;
- ``segmentation_checkpoint``: a ``usf_mae_segment`` model; when given, the app also serves lesion masks under
  ``/infer/usf_mae_segmenter`` (``segmentation_model_name``) and fine-tunes them on saved masks
  (``segmentation_bundle_root`` defaults to the repository's ``usf_mae_segment``);
- ``segmentation_overrides``: JSON of further settings of the segmentation bundle, for serving and fine-tuning the
  segmenter alike (``overrides`` are the classification bundle's and do not apply to it).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore
from monailabel.endpoints.datastore import add_image as add_image_endpoint
from monailabel.endpoints.datastore import save_label as save_label_endpoint
from monailabel.endpoints.infer import run_inference
from monailabel.endpoints.wsi_infer import run_wsi_inference
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from monai_ext.apps.bundle_support import locate_bundle_root
from monai_ext.apps.label.bundle_model import BundleClassifier, load_bundle_classifier
from monai_ext.apps.label.datastore import (
    IMAGE_PATTERNS,
    LABEL_PATTERNS,
    check_image_id,
    check_label_tag,
    check_uploaded_image,
    is_labelled,
    is_listed_image,
    is_listed_label,
    label_file_id,
    served_names,
    stays_in,
    upload_image_id,
    warn_unlisted_files,
)
from monai_ext.apps.label.infer import UltrasoundClassifyInfer
from monai_ext.apps.label.infer_request import (
    UPLOAD_NAME,
    EndpointCall,
    RequestedImage,
    RequestRefused,
    endpoint_call,
    named_by_content,
    request_flag,
    requested_image,
    shown_to_client,
)
from monai_ext.apps.label.lineage import Lineage, explain_unserved, serves_published
from monai_ext.apps.label.segment_infer import UltrasoundSegmentInfer
from monai_ext.apps.label.segment_model import BundleSegmenter, load_bundle_segmenter
from monai_ext.apps.label.segment_train import UltrasoundSegmentTrain
from monai_ext.apps.label.train import UltrasoundClassifyTrain
from monai_ext.apps.label.uploads import discarded_on_failure, endpoint_file_name, endpoint_upload
from monai_ext.engines.inference import NonFiniteOutputError
from monai_ext.io.errors import UnreadableImageError

logger = logging.getLogger(__name__)
DEFAULT_MODEL_NAME = "usf_mae_classifier"
DEFAULT_SEGMENTATION_NAME = "usf_mae_segmenter"
# MONAI Label's endpoints that call app.infer with a file they saved themselves (an upload, a session's image)
_ENDPOINTS = (run_inference.__code__, run_wsi_inference.__code__)
# MONAI Label's datastore endpoints that hand the datastore a file they saved an upload to, and its variable's name
_DATASTORE_ENDPOINTS = {add_image_endpoint.__code__: "image_file", save_label_endpoint.__code__: "label_file"}


def parse_overrides(text: str, name: str = "overrides") -> dict[str, Any]:
    """The ``overrides`` (or ``segmentation_overrides``, ``name``) setting: a JSON object of bundle settings.

    Raises:
        ValueError: ``text`` is no JSON object, quoting it and the setting's ``name``.
    """
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(f"conf {name!r} must be a JSON object, got {text!r} ({e})") from e
    if not isinstance(value, dict):
        raise ValueError(f"conf {name!r} must be a JSON object, got {text!r}")
    return value


class UltrasoundDatastore(LocalDatastore):
    """MONAI Label's local datastore, with class labels counted as labels, hidden files not listed, the label files
    the app is sent (class files, NIfTI masks) listed when the datastore's record is rebuilt, uploads named by their
    content, and no upload written outside its folder."""

    def _list_files(self, path: str, patterns: list[str]) -> dict[str, str]:
        if os.path.realpath(path) != os.path.realpath(self._datastore.image_path()):
            # a label folder: MONAI Label lists it with the image patterns, so a rebuilt record (datastore_v2.json
            # deleted or lost) kept no class file or NIfTI mask, and training found no labels with all of them on disk
            patterns = [*patterns, *LABEL_PATTERNS]
        return served_names(super()._list_files(path, patterns))

    def _to_id(self, file: str) -> tuple[str, str]:
        # MONAI Label takes every suffix of a name it has no pattern for: case.1.json was the label of "case"
        return label_file_id(file) or super()._to_id(file)

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return [k for k, v in self._datastore.objects.items() if is_labelled(v.labels, label_tag)]

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return [k for k, v in self._datastore.objects.items() if not is_labelled(v.labels, label_tag)]

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """MONAI Label's upload of an image, refusing an id that names no file directly in the studies folder
        (``../pwn`` was written outside it) and a file that is no image the datastore lists and reads (a text file,
        one cut off at 0 bytes) with HTTP 422, and naming an upload sent without a file name (``.nii.gz`` by MONAI
        Label's endpoint, which the datastore does not list) or under a name the datastore does not list (a DICOM
        export's ``IM0001``) by its content. An upload sent without an id takes its file name less its image suffix
        as its id (:func:`~monai_ext.apps.label.datastore.upload_image_id`). A refused upload's temporary file is
        removed (:mod:`monai_ext.apps.label.uploads`)."""
        frame = sys._getframe(1)
        try:
            saved = endpoint_file_name(frame, _DATASTORE_ENDPOINTS, image_filename)
        finally:
            del frame  # a frame kept in a local would keep the endpoint's locals alive in a reference cycle
        with discarded_on_failure([image_filename] if saved is not None else []):
            client_name, id_given = saved if saved is not None else ("", True)
            if client_name and not id_given:
                # MONAI Label cut every suffix off the name: patient1.left.png and .right.png were both "patient1"
                image_id = upload_image_id(client_name)
            shown = _upload_shown(saved, image_filename)
            return self._add_image(image_id, image_filename, image_info, shown)

    def _add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any], shown: str) -> str:
        # none given: MONAI Label names the image by its temporary file, taken before the content naming below
        # renames it (every such upload was "upload", each over the one before)
        image_id = image_id or self._to_id(Path(image_filename).name)[0]
        try:
            check_image_id(image_id)
        except ValueError as e:
            raise _unprocessable(str(e)) from e
        with named_by_content(image_filename, is_listed_image) as named:
            try:
                check_uploaded_image(named, shown)
            except ValueError as e:
                raise _unprocessable(str(e)) from e
            stored = image_id + self._to_id(Path(named).name)[1]
            if not stays_in(self._datastore.image_path(), stored):
                raise _unprocessable(f"image id {image_id!r} names a file outside the studies folder (a link?): "
                                     "not written")
            listed_as = self._to_id(stored)[0]
            if listed_as != image_id:
                # MONAI Label lists a file by its name with every copy of its suffix removed: scan.png.png is image
                # "scan" once the record is rebuilt, its labels and "scan.png" the id the client was given lost
                raise _unprocessable(f"image id {image_id!r} would be stored as {stored!r}, which the datastore lists "
                                     f"as image {listed_as!r}: give another id (image=...) or rename the file")
            return super().add_image(image_id, named, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """MONAI Label's save, refusing a tag or image id that would write outside the tag's label folder (``tag=..``
        overwrote the image itself) with HTTP 422, a label for an image id the datastore lacks with HTTP 404 (its own
        exception reached the client as a server error), and naming a picture sent without a file name by its
        content: MONAI Label's endpoint names it ``.nii.gz``, and training refused it as a 3D Slicer NIfTI (a picture
        sent under a name the datastore does not list, ``mask``, likewise). A refused upload's temporary file is
        removed (:mod:`monai_ext.apps.label.uploads`)."""
        with discarded_on_failure(_saved_upload(label_filename)):
            return self._save_label(image_id, label_filename, label_tag, label_info)

    def _save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        try:
            check_label_tag(label_tag)
            check_image_id(image_id)
        except ValueError as e:
            raise _unprocessable(str(e)) from e
        self._known_image(image_id)
        # a mask sent as "mask" was stored as labels/final/<id>: training took it for no picture, a rebuilt record
        # dropped it
        with named_by_content(label_filename, is_listed_label) as named:
            folder = self._datastore.label_path(label_tag)
            if not stays_in(folder, image_id + self._to_id(Path(named).name)[1]):
                raise _unprocessable(f"the label of image {image_id!r} under tag {label_tag!r} names a file outside "
                                     "its folder (a link?): not written")
            return super().save_label(image_id, named, label_tag, label_info)

    def remove_image(self, image_id: str) -> None:
        """MONAI Label's removal of an image and its labels, answering HTTP 404 for an id the datastore lacks (its
        own exception reached the client as a server error, HTTP 500)."""
        self._known_image(image_id)
        super().remove_image(image_id)

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        """MONAI Label's update of an image's info, answering HTTP 404 for an id the datastore lacks (HTTP 500)."""
        self._known_image(image_id)
        super().update_image_info(image_id, info)

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        """MONAI Label's update of a label's info, answering HTTP 404 for a label the datastore lacks (HTTP 500)."""
        if self._datastore.label(label_id, label_tag) is None:
            raise HTTPException(status_code=404, detail=f"no label of image {label_id!r} under tag {label_tag!r} in "
                                                        "the datastore")
        super().update_label_info(label_id, label_tag, info)

    def _known_image(self, image_id: str) -> None:
        """Raise HTTP 404 naming ``image_id`` where the datastore has no such image (a misspelt id): MONAI Label's
        ``ImageNotFoundException`` is no HTTP exception, and its endpoints answered it as a server error."""
        if image_id not in self._datastore.objects:
            raise HTTPException(status_code=404, detail=f"no image {image_id!r} in the datastore")


def _saved_upload(path: str) -> list[str]:
    """``[path]`` when the caller of the datastore method calling this is MONAI Label's datastore endpoint and
    ``path`` the temporary file it saved the upload to; ``[]`` for a file a script gave the datastore."""
    frame = sys._getframe(2)
    try:
        return endpoint_upload(frame, _DATASTORE_ENDPOINTS, path)
    finally:
        del frame  # a frame kept in a local would keep the endpoint's locals alive in a reference cycle


def _upload_shown(saved: tuple[str, bool] | None, path: str) -> str:
    """How messages name an image upload: by the client's file name where the endpoint saved it (``saved``, from
    :func:`~monai_ext.apps.label.uploads.endpoint_file_name`), else by the file a script gave, ``path``."""
    if saved is None:
        return path
    return f"{UPLOAD_NAME} {saved[0]!r}" if saved[0] else UPLOAD_NAME


def _unprocessable(detail: str) -> HTTPException:
    """HTTP 422 with ``detail``, logged (MONAI Label's endpoints let the datastore's exceptions through to the
    client)."""
    logger.warning("refused datastore upload: %s", detail)
    return HTTPException(status_code=422, detail=detail)


class UltrasoundClassifierApp(MONAILabelApp):
    """One classification model from the ``usf_mae_classify`` bundle, plus MONAI Label's local datastore."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        conf = dict(conf or {})
        self.bundle_root = Path(conf.get("bundle_root") or locate_bundle_root("usf_mae_classify"))
        self.checkpoint = Path(conf.get("checkpoint") or self.bundle_root / "models" / "model.pt")
        self.model_name = conf.get("model_name", DEFAULT_MODEL_NAME)
        self.device = conf.get("device") or None
        self.overrides = parse_overrides(conf.get("overrides", "{}"))
        # where the train task publishes fine-tuned models (MONAI Label's model/ folder of the app), served only
        # while the app runs from the checkpoint and studies they were fine-tuned from
        self.published = Path(app_dir) / "model" / f"{self.model_name}.pt"
        self.lineage = Lineage.of(self.checkpoint, studies)
        explain_unserved(self.published, self.lineage)
        # the infer task loads the model before MONAILabelApp.__init__ asks for the tasks
        self.infer_task = UltrasoundClassifyInfer(self.load_classifier, self.served_checkpoint)
        self.class_names = self.infer_task.model.class_names
        self.segmentation = (SegmentationService(app_dir, studies, conf, self.device)
                             if conf.get("segmentation_checkpoint") else None)
        logger.info("serving %s (%s) as %r on %s", self.served_checkpoint(), ", ".join(self.class_names),
                    self.model_name, self.infer_task.model.device)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="USF-MAE ultrasound classifier",
            description="Ultrasound image classification with a fine-tuned USF-MAE ViT (usf_mae_classify bundle)",
            labels=self.class_names,
        )

    def served_checkpoint(self) -> Path:
        """The fine-tuned model the train task published from this app's checkpoint and studies, else the
        configured checkpoint (see :mod:`monai_ext.apps.label.lineage`)."""
        return self.published if serves_published(self.published, self.lineage) else self.checkpoint

    def load_classifier(self, checkpoint: Path) -> BundleClassifier:
        return load_bundle_classifier(self.bundle_root, checkpoint, self.device, self.overrides)

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        warn_unlisted_files(Path(self.studies))
        return UltrasoundDatastore(self.studies, extensions=IMAGE_PATTERNS, auto_reload=True)

    def init_infers(self) -> dict[str, InferTask]:
        segmentation = {self.segmentation.name: self.segmentation.infer_task} if self.segmentation else {}
        return {self.model_name: self.infer_task, **segmentation}

    def init_trainers(self) -> dict[str, TrainTask]:
        task = UltrasoundClassifyTrain(self.bundle_root, self.served_checkpoint, self.published, self.lineage,
                                       self.class_names, self.overrides, self.device)
        segmentation = {self.segmentation.name: self.segmentation.train_task()} if self.segmentation else {}
        return {self.model_name: task, **segmentation}

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer, serving only a datastore id or the file MONAI Label's endpoint made for this request
        (see :mod:`monai_ext.apps.label.infer_request`), with refusals answered as HTTP 4xx naming the reason: an
        unknown model or image id (404), a bad ``heatmap`` param, ``output=image`` without an image to send, an
        unreadable image (422). Answers name the image as the client knows it, never by its file on the server. The
        endpoint's temporary files of a failed request are removed (:mod:`monai_ext.apps.label.uploads`)."""
        call = _endpoint_call()
        with discarded_on_failure(call.files if call is not None else ()):
            return self._infer_call(request, call, datastore)

    def infer_wsi(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's WSI infer, with the endpoint's temporary file of a failed request removed: the tiles' infer
        calls run in a thread pool, where :meth:`infer` finds no endpoint, and a tiled upload fails before any."""
        call = _endpoint_call()
        with discarded_on_failure(call.files if call is not None else ()):
            return super().infer_wsi(request, datastore)

    def _infer_call(self, request: dict[str, Any], call: EndpointCall | None,
                    datastore: Datastore | None) -> dict[str, Any]:
        """:meth:`infer` of a request that ``call``, MONAI Label's endpoint, made (None outside one)."""
        store = datastore or self.datastore()
        try:
            image = self._accept(request, call, store)
        except RequestRefused as e:
            logger.warning("refused infer request for %r (%s): %s", request.get("image"), request.get("model"),
                           e.detail)
            raise HTTPException(status_code=e.status, detail=e.detail) from e
        # MONAI Label resolves an id to its file; the messages below name it by the id instead
        shown = {store.get_image_uri(request["image"]) if image.is_datastore_id else request["image"]: image.name}
        with ExitStack() as stack:
            if call is not None and call.upload and request["image"] == call.upload:  # read by its content's suffix
                request = {**request, "image": stack.enter_context(named_by_content(call.upload))}
                shown[request["image"]] = image.name
            result = self._infer_shown(request, datastore, shown)
        if call is not None and call.output == "image" and not result.get("file"):
            # MONAI Label would send a file named None: a TypeError, HTTP 500
            raise HTTPException(status_code=422, detail=f"model {request.get('model')!r} gave no image for "
                                                        f"{image.name} (Grad-CAM needs a ViT network): use output=json")
        return result

    def _infer_shown(self, request: dict[str, Any], datastore: Datastore | None,
                     shown: dict[str, str]) -> dict[str, Any]:
        """MONAI Label's infer, with an unreadable image (422) and a model that gives NaN (500) answered naming the
        image by ``shown``."""
        try:
            return super().infer(request, datastore)
        except UnreadableImageError as e:
            logger.warning("refused %s: %s", request.get("image"), e)
            raise HTTPException(
                status_code=422, detail=f"not a readable PNG/JPG/BMP/TIFF/DICOM image: {shown_to_client(str(e), shown)}"
            ) from e
        except NonFiniteOutputError as e:  # the model's fault, not the request's: said, not a bare 500
            logger.error("no result for %s: %s", request.get("image"), e)
            raise HTTPException(status_code=500, detail=shown_to_client(str(e), shown)) from e

    def _accept(self, request: dict[str, Any], call: EndpointCall | None, store: Datastore) -> RequestedImage:
        """The request's image, once its model, image and params are ones this app serves.

        Raises:
            RequestRefused: the reason and its HTTP status.
        """
        model = request.get("model")
        if model not in self._infers:  # MONAI Label's own refusal of it was a bare HTTP 500
            raise RequestRefused(404, f"no model {model!r}; this server serves {', '.join(map(repr, self._infers))}")
        image = requested_image(request.get("image"), call, store.list_images)
        if model == self.model_name:
            heatmap = request_flag(request, "heatmap")
            if call is not None and call.output == "image" and not heatmap:
                raise RequestRefused(422, 'output=image returns the Grad-CAM heat map and needs params '
                                          '{"heatmap": true}; use output=json for the class alone')
        return image


def _endpoint_call() -> EndpointCall | None:
    """The endpoint's view of the request, for the app's method calling this (:func:`endpoint_call`)."""
    frame = sys._getframe(2)
    try:
        return endpoint_call(frame, _ENDPOINTS)
    finally:
        del frame  # a frame kept in a local would keep the endpoint's locals alive in a reference cycle


class SegmentationService:
    """The segmentation model of the app: its checkpoint, published file, infer task and train task."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str], device: str | None) -> None:
        self.bundle_root = Path(conf.get("segmentation_bundle_root") or locate_bundle_root("usf_mae_segment"))
        self.checkpoint = Path(conf["segmentation_checkpoint"])
        self.name = conf.get("segmentation_model_name", DEFAULT_SEGMENTATION_NAME)
        self.device = device
        # the segmentation bundle's own settings: the classifier's (``overrides``) are another bundle's, whose keys
        # (image_size for a classifier checkpoint) would break this model
        self.overrides = parse_overrides(conf.get("segmentation_overrides", "{}"), "segmentation_overrides")
        self.published = Path(app_dir) / "model" / f"{self.name}.pt"
        self.lineage = Lineage.of(self.checkpoint, studies)
        explain_unserved(self.published, self.lineage)
        self.infer_task = UltrasoundSegmentInfer(self.load, self.served_checkpoint)
        logger.info("serving %s as %r", self.served_checkpoint(), self.name)

    def served_checkpoint(self) -> Path:
        return self.published if serves_published(self.published, self.lineage) else self.checkpoint

    def load(self, checkpoint: Path) -> BundleSegmenter:
        return load_bundle_segmenter(self.bundle_root, checkpoint, self.device, self.overrides)

    def train_task(self) -> UltrasoundSegmentTrain:
        return UltrasoundSegmentTrain(self.bundle_root, self.served_checkpoint, self.published, self.lineage,
                                      self.infer_task.model.class_names, self.overrides, self.device)
