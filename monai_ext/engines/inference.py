"""Classifier inference on image files: class probabilities as JSON, optional token Grad-CAM heat maps as PNGs."""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from monai_ext.engines.base import autocast
from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.errors import UnreadableImageError, root_cause
from monai_ext.io.figures import save_png
from monai_ext.io.images import picture_orientation, read_image, unique_output_stems
from monai_ext.io.json_values import json_tree
from monai_ext.io.signals import stop_signals_raise
from monai_ext.visualize.gradcam import gradcam_overlay, has_token_blocks

logger = logging.getLogger(__name__)


#: Where the bundles' loading (``LoadUltrasoundImaged(frames_key=...)``) puts the number of frames a file holds.
FRAMES_KEY = "image_frames"
#: Where that loading puts the index of the frame it read (``<frames_key>_index``): 0 but for a volume, whose first
#: slice with content it reads (:func:`~monai_ext.io.volumes.read_first_volume_frame`).
FRAME_INDEX_KEY = f"{FRAMES_KEY}_index"
#: Where the segmentation bundle's loading (``LoadUltrasoundImaged(orientation_key=...)``) puts the EXIF Orientation
#: it applied to a file's stored pixels.
ORIENTATION_KEY = "image_orientation"


def applied_orientation(loaded: Mapping[str, Any], path: str | os.PathLike) -> int:
    """The EXIF Orientation the loader applied to ``path`` (its record under :data:`ORIENTATION_KEY`), else asked of
    the file (:func:`~monai_ext.io.images.picture_orientation`: a loading config written before the record)."""
    return int(loaded[ORIENTATION_KEY]) if ORIENTATION_KEY in loaded else picture_orientation(path)


def prepare_image(
    path: str | os.PathLike, transform: Callable[[dict[str, Any]], dict[str, Any]], device: torch.device
) -> tuple[torch.Tensor, int, int]:
    """Read and preprocess one file into a batch of one.

    Returns:
        (1, C, H, W) float32 on ``device``, the number of frames the file holds and the index of the one the image
        is (:func:`frames_read`).

    Raises:
        Whatever the transform raises for an unreadable file (``UnreadableImageError`` names the file and reason).
        UnreadableImageError: the preprocessed image holds NaN or infinite values (a class for it would be for
            pixels nobody saw: the argmax of NaN probabilities is class 0).
    """
    data = transform({"image": str(path)})
    image = torch.as_tensor(data["image"]).float()
    if not bool(torch.isfinite(image).all()):
        raise UnreadableImageError(f"{path}: {int((~torch.isfinite(image)).sum())} of {image.numel()} preprocessed "
                                   "values are NaN or infinite")
    return image[None].to(device), *frames_read(data)


def frames_read(loaded: Mapping[str, Any]) -> tuple[int, int]:
    """(the frames the file holds, the index of the one read) as the loading recorded them under :data:`FRAMES_KEY`
    and :data:`FRAME_INDEX_KEY`; 1 and 0 where it recorded none (a loading config that does not count frames)."""
    return int(loaded.get(FRAMES_KEY, 1)), int(loaded.get(FRAME_INDEX_KEY, 0))


def classify_image(
    network: torch.nn.Module,
    image: torch.Tensor,
    class_names: Sequence[str],
    precision: str = "bf16",
    inferer: Callable[[torch.Tensor, torch.nn.Module], torch.Tensor] | None = None,
    postprocessing: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Class probabilities for one preprocessed image.

    Args:
        network: classifier returning logits (1, K), in eval mode.
        image: (1, C, H, W) from :func:`prepare_image`.
        class_names: K names.
        precision: autocast precision on CUDA.
        inferer: MONAI inferer, called as ``inferer(image, network)``; None calls the network directly.
        postprocessing: logits (K,) of the image to probabilities (K,), e.g. MONAI's ``Activations(softmax=True)``;
            None applies a softmax.

    Returns:
        ``{"label": index, "class": name, "probabilities": {name: p}}``.

    Raises:
        NonFiniteOutputError: the network's logits hold NaN or inf.
    """
    with torch.no_grad(), autocast(image.device, precision):
        logits = (inferer(image, network) if inferer is not None else network(image)).float()
    require_finite_output(logits)
    probs = (postprocessing(logits[0]) if postprocessing is not None else torch.softmax(logits[0], dim=0)).cpu()
    if probs.numel() != len(class_names):
        raise ValueError(f"network gives {probs.numel()} classes but class_names has {len(class_names)}: {class_names!r}")
    label = int(probs.argmax())
    return {
        "label": label,
        "class": class_names[label],
        "probabilities": {name: float(p) for name, p in zip(class_names, probs)},
    }


class NonFiniteOutputError(ValueError):
    """The network gave NaN or inf for an image."""


def require_finite_output(logits: torch.Tensor) -> None:
    """Refuse NaN or inf ``logits`` (any shape, e.g. (N, K)): their arg-max is class 0, so damaged or diverged weights labelled a whole archive
    with the first class (and segmented it as background) while the run ended well.

    Raises:
        NonFiniteOutputError: naming what to suspect.
    """
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteOutputError("the network's output holds NaN or inf: its weights are damaged or diverged "
                                   "(check the checkpoint), or the image holds values it cannot take; no prediction")


def predict_files(
    network: torch.nn.Module,
    files: Sequence[str | os.PathLike],
    transform: Callable[[dict[str, Any]], dict[str, Any]],
    class_names: Sequence[str],
    device: torch.device | str,
    output_json: str | os.PathLike,
    heatmap_dir: str | os.PathLike | None = None,
    precision: str = "bf16",
    inferer: Callable[[torch.Tensor, torch.nn.Module], torch.Tensor] | None = None,
    postprocessing: Callable[[torch.Tensor], torch.Tensor] | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """Predict every file; unreadable ones are listed with the reason and skipped.

    Args:
        network: classifier returning logits (N, K).
        files: image paths (PNG/JPG/BMP/TIFF/DICOM).
        transform: the bundle's validation preprocessing (dict in, ``{"image": (C, H, W)}`` out).
        class_names: K names.
        device: where to run.
        output_json: result file (written atomically).
        heatmap_dir: folder for ``<stem>_gradcam.png`` files, or None.
        precision: autocast precision on CUDA.
        inferer, postprocessing: as :func:`classify_image`.
        weights: the weights the network holds (a checkpoint path, or "random"), recorded as ``"weights"`` from the
            first write on, so a stopped run's file says which model made its predictions.

    Returns:
        ``{"class_names", "predictions": {path: {"label", "class", "probabilities": {name: p}[, "heatmap": file]
        [, "warning": text][, "frames": n, "frame": i]}}, "errors": {path: reason}[, "weights"], "complete": true}``
        (``heatmap``, absolute; while the run goes, :data:`PENDING_KEY` lists the heat maps it may write). A file
        whose heat map could not be written keeps its prediction (without ``heatmap``) and is listed under
        ``errors`` too; a blank image's prediction carries a ``warning`` (:func:`note_if_blank`), and that of a file
        of several frames their number and the index of the one predicted (:func:`note_if_several_frames`, when
        ``transform`` records them); the JSON is written whatever single files
        do, and kept while the batch runs (:func:`kept_results`: a stopped run leaves the files done,
        ``"complete": false``).

    Raises:
        FileExistsError: the JSON's folder or ``heatmap_dir`` is an existing file (before any prediction).
        ValueError: no file gave a prediction (:func:`require_some_result`; the JSON is written first).
    """
    if not files:
        raise ValueError("no input files to predict")
    output_json = Path(output_json)
    make_output_folders(output_json.parent, *([Path(heatmap_dir)] if heatmap_dir is not None else []))
    device = torch.device(device)
    network.eval()
    heatmaps = heatmap_dir is not None and has_token_blocks(network)
    if heatmap_dir is not None and not heatmaps:  # the folder stayed empty without a word
        logger.warning("heat maps need a ViT's token blocks (Grad-CAM over patch tokens); %s has none, so none are "
                       "written to %s", type(network).__name__, heatmap_dir)
    stems = unique_output_stems(files)
    result: dict[str, Any] = {"class_names": list(class_names), "predictions": {}, "errors": {},
                              **({"weights": weights} if weights is not None else {})}
    if heatmaps:  # until the run completes: the files it may write (kept_results)
        result[PENDING_KEY] = [os.path.abspath(Path(heatmap_dir) / f"{stem}_gradcam.png") for stem in stems]
    clear_earlier_outputs(output_json, "predictions", ["heatmap"])
    with kept_results(output_json, result) as one_more_file:
        for path, stem in zip(tqdm(files, desc="predict", unit="image"), stems):
            one_more_file()
            try:
                image, frames, frame = prepare_image(path, transform, device)
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
                record_error(result, path, root_cause(e))
                if heatmaps:
                    remove_earlier_outputs(Path(heatmap_dir) / f"{stem}_gradcam.png")
                continue
            try:
                prediction = classify_image(network, image, class_names, precision, inferer, postprocessing)
            except NonFiniteOutputError as e:  # this file fails (every file, for damaged weights: exit code 2)
                record_error(result, path, str(e))
                if heatmaps:
                    remove_earlier_outputs(Path(heatmap_dir) / f"{stem}_gradcam.png")
                continue
            note_if_blank(prediction, path, image)
            note_if_several_frames(prediction, path, frames, frame)
            result["predictions"][str(path)] = prediction
            if heatmaps:
                prediction.update(_heatmap(network, image, prediction["label"], Path(heatmap_dir), stem, result,
                                           path))
    logger.info("%d predictions, %d errors: %s", len(result["predictions"]), len(result["errors"]), output_json)
    require_some_result(len(result["predictions"]), result["errors"], "predictions", output_json)
    return result


#: Where a results file lists, while its run goes, every output file the run may write (absolute paths): outputs are
#: written after every input and the file only now and then (:data:`SAVE_EVERY`), so a run killed outright left
#: outputs that no list named, and a rerun with other inputs kept them beside its own (:func:`clear_earlier_outputs`).
#: Dropped when the run completes, whose entries list what it wrote.
PENDING_KEY = "pending_outputs"


def _heatmap(network: torch.nn.Module, image: torch.Tensor, label: int, folder: Path, stem: str,
             result: dict[str, Any], path: str | os.PathLike) -> dict[str, str]:
    """Write ``<stem>_gradcam.png``; ``{"heatmap": file}``, or ``{}`` with the reason under ``errors``."""
    heatmap_file = folder / f"{stem}_gradcam.png"
    try:
        # over the file's own pixels at its size, as a viewer shows it (the network saw a square resize of it)
        save_png(gradcam_overlay(network, image, label, read_image(path).pixels), heatmap_file)
    except (OSError, UnreadableImageError) as e:  # a full disk, a name the filesystem refuses, a file changed since
        # it was read: this file's heat map only
        record_error(result, path, f"heat map not written: {type(e).__name__}: {e}")
        remove_earlier_outputs(heatmap_file)
        return {}
    return {"heatmap": os.path.abspath(heatmap_file)}  # absolute: a later run from another folder finds it


def make_output_folders(*folders: Path) -> None:
    """Create the output folders before any work, so that a path that is taken (an existing file) fails at once
    rather than after every prediction has been made.

    Raises:
        FileExistsError: naming a path that exists and is not a folder.
    """
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise FileExistsError(f"output folder {str(folder)!r} exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)


#: Files between two writes of the results file while a batch runs, at least. A run killed outright (SIGKILL, a
#: lost machine) loses the results of the files since its last write: fewer than SAVE_EVERY, then fewer than
#: :data:`SAVE_GROWTH` of those done, and in any case about :data:`SAVE_SECONDS` of work at most (or
#: :data:`SAVE_COST_RATIO` times a slow write's duration). An exception,
#: Ctrl-C, SIGTERM or SIGHUP loses none.
SAVE_EVERY = 50
#: Each write holds every result so far (and :data:`PENDING_KEY`'s whole list), so a write every SAVE_EVERY files
#: made the writing quadratic: 40 GB in 2,000 writes for 10^5 images. The gap grows with the results instead (a
#: write holds at least this fraction more than the last): O(log N) writes, of about twice 1 / SAVE_GROWTH times the
#: final file's size in all (the pending outputs' whole list is in each, and the first gaps are SAVE_EVERY files).
SAVE_GROWTH = 0.1
#: Seconds after which the file is rewritten however little it grew, by one file or more (a slow run, Grad-CAM on a
#: CPU, would lose up to SAVE_GROWTH of a long run, or SAVE_EVERY files of minutes each), or after :data:`SAVE_COST_RATIO` times the last write's duration where that is
#: longer, so that these writes take at most 1 / SAVE_COST_RATIO of the run whatever its size.
SAVE_SECONDS = 60.0
SAVE_COST_RATIO = 20.0


def save_due(done: int, saved: int, seconds_since: float, write_seconds: float, save_every: int = SAVE_EVERY) -> bool:
    """Whether a results file written when ``saved`` files were done, ``seconds_since`` ago, in ``write_seconds``,
    is due to be rewritten now that ``done`` are (see :data:`SAVE_EVERY`, :data:`SAVE_GROWTH`,
    :data:`SAVE_SECONDS`)."""
    gap = done - saved
    if gap < 1:
        return False
    # the time bound first: at six seconds a file (Grad-CAM on a CPU) SAVE_EVERY files were five minutes of work
    if seconds_since >= max(SAVE_SECONDS, SAVE_COST_RATIO * write_seconds):
        return True
    return gap >= save_every and gap >= SAVE_GROWTH * saved


@contextmanager
def kept_results(path: Path, result: dict[str, Any], save_every: int = SAVE_EVERY) -> Iterator[Callable[[], None]]:
    """Keep ``result`` in the JSON file ``path`` while a batch fills it.

    The file is written at once with ``"complete": false``, so an earlier run's file in the same folder never
    outlives the start of this one; ``result``'s :data:`PENDING_KEY` is kept until the end, then dropped. Yields a
    function to call once per file: the file is rewritten (atomically) every ``save_every`` calls at first, then
    at growing gaps (:func:`save_due`), and when the batch stops on an exception, Ctrl-C, SIGTERM or SIGHUP (then
    re-raised); at the end it is written with ``"complete": true``.
    """
    if save_every < 1:
        raise ValueError(f"save_every must be at least 1, got {save_every!r}")
    calls = itertools.count(1)
    last = {"calls": 0, "at": 0.0, "took": 0.0}  # the latest write: after how many calls, when, how long it took

    def write(calls_made: int) -> None:
        start = time.monotonic()
        _write_results(path, result, complete=False)
        end = time.monotonic()
        last.update(calls=calls_made, at=end, took=end - start)

    def one_more_file() -> None:
        calls_made = next(calls)
        if save_due(calls_made, last["calls"], time.monotonic() - last["at"], last["took"], save_every):
            write(calls_made)

    write(0)
    try:
        with stop_signals_raise():
            yield one_more_file
    except BaseException:
        _write_results(path, result, complete=False)
        raise
    result.pop(PENDING_KEY, None)  # complete: its entries list what it wrote
    _write_results(path, result, complete=True)


def clear_earlier_outputs(results_json: Path, entries_key: str, file_keys: Sequence[str],
                          derived: Callable[[Path], Sequence[Path]] | None = None) -> None:
    """Remove the files an earlier run into this output folder wrote, as its results file lists them, before this
    run replaces that file: its heat maps or masks of other inputs (or of another model) left beside this run's
    would be taken for this run's by anyone browsing the folder.

    Only files the earlier results file names (and ``derived`` from them), inside its folder, are removed: a user's
    own files there, whatever their names, stay. An earlier run that did not complete (killed outright, its file
    last written some inputs before: :data:`SAVE_EVERY`) names, under :data:`PENDING_KEY`, every file it was to
    write; those are removed too (its latest outputs are in no entry), and nothing else.

    Args:
        results_json: the results file (``predictions.json``, ``masks.json``) about to be written.
        entries_key: its per-input part (``"predictions"``, ``"masks"``).
        file_keys: the keys of an entry that name an output file (``"heatmap"``, ``"mask"``).
        derived: further outputs of a listed file (a mask's overlay).
    """
    try:
        earlier = json.loads(results_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    entries = earlier.get(entries_key) if isinstance(earlier, dict) else None
    folder = Path(os.path.realpath(results_json.parent))
    files = []
    for entry in (entries.values() if isinstance(entries, dict) else []):
        for key in file_keys:
            listed = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(listed, str):
                files += [Path(listed), *(derived(Path(listed)) if derived else [])]
    pending = earlier.get(PENDING_KEY) if isinstance(earlier, dict) and earlier.get("complete") is not True else None
    files += [Path(listed) for listed in (pending if isinstance(pending, list) else []) if isinstance(listed, str)]
    # real paths: the folder may be reached through a link (/data -> /mnt/data) by one run and not by the next
    inside = [f for f in files if Path(os.path.realpath(f)).is_relative_to(folder)]
    remove_earlier_outputs(*inside)
    if inside:
        logger.info("%s: removed %d output file(s) of the earlier run it lists (or that a run which did not complete "
                    "was to write)", results_json, len(inside))


def require_some_result(done: int, errors: dict[str, str], what: str, output_json: Path) -> None:
    """Stop with exit code 2 when no input gave a result: a mistyped path or a folder given as a file must not end
    as a success with an empty output.

    Raises:
        ValueError: naming the first input's reason and the results file.
    """
    if done == 0 and errors:
        reason = next(iter(errors.values()))
        # "gave" not "could be read": damaged weights (a NaN output) fail every file that was read well
        raise ValueError(f"no {what}: none of the {len(errors)} input file(s) gave a result (first: {reason}); "
                         f"see {output_json}")


def _write_results(path: Path, result: dict[str, Any], complete: bool) -> None:
    result["complete"] = complete
    atomic_write_bytes(path, json.dumps(json_tree(result), indent=1, allow_nan=False).encode())


BLANK_IMAGE_WARNING = "blank image: every pixel has the same value, so the output says nothing about it"


def note_if_blank(entry: dict[str, Any], path: str | os.PathLike, image: torch.Tensor) -> None:
    """Add ``BLANK_IMAGE_WARNING`` to ``entry`` (and the log) when every pixel of the preprocessed ``image``
    ((N, C, H, W) or (C, H, W)) has one value per channel: one gray level or one colour.

    A blank frame (an empty DICOM export, a 1 x 1 placeholder) decodes fine and still gets a confident-looking
    answer; an annotator or a batch report should see that it was about nothing. Per channel, because channel-wise
    normalisation gives a gray image repeated into three channels a different value in each.

    Raises:
        ValueError: ``image`` has fewer than three dimensions.
    """
    if image.ndim < 3:
        raise ValueError(f"note_if_blank needs (C, H, W) or (N, C, H, W), got shape {tuple(image.shape)}")
    pixels = image.reshape(-1, *image.shape[-3:]).flatten(2).float()  # (N, C, H*W)
    if not pixels.numel():
        return
    high, low = pixels.amax(dim=2), pixels.amin(dim=2)
    # a relative tolerance: area resizing of a uniform gray leaves a spread of ~1e-7 (float rounding), while the
    # smallest real contrast, one 16-bit level after normalisation, is ~1e-5 of the range
    if bool((high - low <= 1e-6 * torch.maximum(high.abs(), low.abs()).clamp(min=1.0)).all()):
        entry["warning"] = BLANK_IMAGE_WARNING
        logger.warning("%s: %s", path, BLANK_IMAGE_WARNING)


def note_if_several_frames(entry: dict[str, Any], path: str | os.PathLike, frames: int, frame: int = 0) -> None:
    """Add ``"frames": frames`` and ``"frame": frame``, the index of the frame the output is of, to ``entry`` (and
    say in the log which it is) when the file holds several: a cine loop, a multi-frame DICOM, a volume or a
    multi-page TIFF.

    The single-image loader reads the first frame (0) of a loop, a multi-frame DICOM or a multi-page picture, and
    the first slice with content of a volume (:func:`frames_read`): a viewer given a 2-D mask with the count alone
    laid it on slice 0. A person reading a result expects it to be about the whole loop the viewer plays, and a
    loop's first frame is often one taken before the probe settles.
    """
    if frames <= 1:
        return
    entry["frames"], entry["frame"] = frames, frame
    if frame == 0:
        logger.warning("%s: holds %d frames; the output is of the first (frame 0)", path, frames)
    else:
        logger.warning("%s: holds %d frames; the output is of frame %d, the volume's first slice with content", path,
                       frames, frame)


def remove_earlier_outputs(*files: Path) -> None:
    """Remove what an earlier run into the same output folder wrote for an input this run could not do.

    The results JSON lists the input under ``errors``; its old mask or heat map left in the folder would still be
    taken for this run's by anyone browsing the folder or loading masks into a viewer by name. A file that cannot be
    removed is left, with a warning: the batch goes on.
    """
    for file in files:
        try:
            file.unlink(missing_ok=True)
        except OSError as e:
            logger.warning("%s: an earlier run's output could not be removed: %s", file, e)


def record_error(result: dict[str, Any], path: str | os.PathLike, reason: str) -> None:
    """List ``reason`` under ``result["errors"]`` for ``path`` and log it."""
    result["errors"][str(path)] = reason
    logger.warning("%s: %s", path, reason)
