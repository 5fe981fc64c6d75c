"""Command line: ``python -m monai_ext <command> ...`` (built with ``fire``; ``--help`` on any command).

Commands:
    synthesize          write simulated ultrasound images (the embedded default data) and print the throughput
    inspect-checkpoint  name a checkpoint's layout and list what it holds
    convert-checkpoint  convert any known layout into this project's self-describing file
    make-datalist       write one fold of a dataset protocol as a bundle's JSON datalist (classify or segment)
    cross-validate      fine-tune and test every fold for several starting points; mean +/- std table
    label-efficiency    full fine-tuning, pretrained vs random, at several labels per class: table and PNG
    bundle-path         print the folder of a bundle shipped with the package (for --config_file when installed)
    export-onnx         export a classifier checkpoint to ONNX, checked against the eager model with onnxruntime
    prepare-corpus      ingest ROOT/<dataset>/... into a memory-mapped, deduplicated pretraining cache
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import re
import sys
import traceback
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import fire
import fire.core

from monai_ext.apps.one_line_errors import traceback_wanted
from monai_ext.io.errors import one_line, user_error_in
from monai_ext.io.settings import is_unset, setting_text, typed_command_line


def synthesize(
    out: str,
    num: int = 1000,
    seed: int = 0,
    size: int = 256,
    geometry: str | None = None,
    screen_capture: bool = True,
    fmt: str = "png",
    lesion: str | None = "random",
    workers: int | None = None,
) -> None:
    """Simulate ``num`` B-mode images into ``out`` and print images per second.

    Args:
        out: output folder.
        num: number of images.
        seed: base seed (image i uses seed (seed, i)).
        size: image side in pixels.
        geometry: linear, curvilinear, or none for a mix.
        screen_capture: burn in text, calipers, colour bar and depth scale.
        fmt: png, dcm or nii.
        lesion: oval, irregular, cyst, none (no lesion), or random.
        workers: processes (default: all cores).
    """
    from monai_ext.data.synthetic import SimulatorConfig, generate_dataset

    # fire passes --lesion none / null on as text (only None becomes Python's None): the bundles' words for unset
    geometry = None if is_unset(geometry) else geometry
    lesion = None if is_unset(lesion) else lesion
    config = SimulatorConfig(size=size, geometry=geometry, screen_capture=screen_capture)
    record = generate_dataset(out, num, seed, config, fmt, lesion, workers)
    print(f"{len(record['files'])} images in {out}: {record['images_per_second']:.1f} images/s")


def inspect_checkpoint(path: str, sha256: str | None = None) -> None:
    """Read a checkpoint safely and report its layout, parameter count and top-level key groups.

    Args:
        path: the checkpoint file.
        sha256: its expected SHA-256, checked before it is read.
    """
    from monai_ext.apps.conversion import describe_checkpoint

    print(json.dumps(describe_checkpoint(path, sha256), indent=1, default=str))


def convert_checkpoint(src: str, dst: str, arch: str | None = None, img_size: int | None = None,
                       in_chans: int | None = None, norm_pix_loss: bool | None = None,
                       sha256: str | None = None) -> None:
    """Load ``src`` (any known MAE layout) into an MAE strictly and save it with its architecture record.

    Each setting of the MAE to build that is not given comes from what ``src`` records (a file of this project: its
    whole architecture record, ``norm_eps`` included, a training checkpoint's too; a Facebook file: the ``model``,
    ``input_size`` and ``norm_pix_loss`` of its training ``args``; then a foreign file's weights: the channels of its
    patch kernel and the image size of its position grid), else from the released USF-MAE's and Facebook's. The
    summary says where each setting came from.

    Args:
        src: the checkpoint to convert.
        dst: the file to write.
        arch: the MAE architecture to build (default mae_vit_base_patch16_dec512d8b).
        img_size: its image size in pixels (default: the file's record or weights, else 224).
        in_chans: its input channels (default: the file's record or weights, else 3).
        norm_pix_loss: whether it predicts per-patch normalised pixels (default no).
        sha256: the expected SHA-256 of ``src``, checked before it is read.
    """
    from monai_ext.apps.conversion import convert_mae_checkpoint

    _check_output_file(dst)  # before the model is built and loaded
    print(convert_mae_checkpoint(src, dst, arch=arch, img_size=img_size, in_chans=in_chans,
                                 norm_pix_loss=norm_pix_loss, sha256=sha256))


def _as_list(value: object) -> list[str]:
    """``"a,b"``, ``("a", "b")`` (fire parses ``a,b`` into a tuple) or a single value -> ``["a", "b"]``."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def make_datalist(protocol: str, root: str, out: str, fold: int = 0, folds: int | None = None,
                  multiclass: bool = False) -> None:
    """Write fold ``fold`` of a protocol to ``out`` (JSON): classification (busbra, mmotu, gist514, folder, csv) or
    segmentation (busbra-seg, mmotu-seg, busi, image-mask-folders; for the usf_mae_segment bundle).

    Args:
        protocol: dataset protocol name.
        root: the dataset folder as distributed (a CSV file for ``csv``).
        out: JSON file for ``--datalist_file``.
        fold: which split.
        folds: BUS-BRA 5 or 10; k for folder/csv/busi/image-mask-folders.
        multiclass: mmotu-seg with the 8 tumour classes instead of tumour vs background.
    """
    from monai_ext.data.datalists import check_split, warn_of_several_frames, write_split
    from monai_ext.data.downstream import PROTOCOLS, load_protocol
    from monai_ext.data.segmentation import SEGMENTATION_PROTOCOLS, load_segmentation_protocol

    _check_output_file(out)
    known = sorted(PROTOCOLS) + sorted(SEGMENTATION_PROTOCOLS)
    if protocol not in known:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {known}")
    kwargs: dict[str, object] = {"folds": folds} if folds is not None else {}
    if multiclass:
        kwargs["multiclass"] = True
    load = load_segmentation_protocol if protocol in SEGMENTATION_PROTOCOLS else load_protocol
    _check_protocol_options(protocol, {**PROTOCOLS, **SEGMENTATION_PROTOCOLS}, kwargs)
    proto = load(protocol, root, **kwargs)
    if not 0 <= fold < len(proto.splits):
        raise ValueError(f"fold must be in [0, {len(proto.splits)}), got {fold!r}")
    split = proto.splits[fold]
    task = "segmentation" if protocol in SEGMENTATION_PROTOCOLS else "classification"
    check_split(split, proto.class_names, out, task)  # what a bundle would refuse is refused now, nothing written
    warn_of_several_frames(split, out)
    write_split(split, proto.class_names, out, task)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in split.items())
    print(f"{proto.name} {proto.fold_name(fold)}: {sizes} -> {out}")  # a CSV's fold column numbers folds its own way
    print(f"classes: {_class_counts(split, proto.class_names, task)}")


def _class_counts(split: dict[str, list[dict]], class_names: list[str], task: str) -> str:
    """``benign 120, malignant 80`` over every part of a classification split (a wrong class, from a typo or a
    folder of masks, shows at once). For segmentation, whose labels are masks: the images of each foreground class
    where items name theirs (``foreground``: MMOTU-2D's ``--multiclass``; the background class has no count), else
    the names alone."""
    if task == "classification":
        key, first = "label", 0
    elif any("foreground" in item for items in split.values() for item in items):
        key, first = "foreground", 1
    else:
        return ", ".join(class_names)
    counts = [0] * len(class_names)
    for items in split.values():
        for item in items:
            counts[int(item[key])] += 1
    return ", ".join(name if c < first else f"{name} {n}" for c, (name, n) in enumerate(zip(class_names, counts)))


def _check_protocol_options(protocol: str, loaders: dict[str, Callable[..., object]],
                            options: dict[str, object]) -> None:
    """Refuse an option the protocol's loader does not take, in one line naming those that do (Python's own error
    is a TypeError traceback): MMOTU and GIST514 have one official split (no ``--folds``)."""
    for name in options:
        if name not in inspect.signature(loaders[protocol]).parameters:
            takers = sorted(other for other, loader in loaders.items() if name in inspect.signature(loader).parameters)
            raise ValueError(f"--{name} does not apply to protocol {protocol!r}; it applies to {', '.join(takers)}")


def _check_output_file(out: str) -> None:
    """Refuse, before any work, an ``out`` that cannot be written as a file (``~`` expanded, as the writer does): a
    folder, or a path under a file. The writer would fail after reading the dataset, naming its temporary file
    (``[Errno 21] Is a directory: '.folds.lt6otgaa.tmp' -> 'folds'``) or only the file in the way (``[Errno 17]``).

    Raises:
        IsADirectoryError: ``out`` is a folder.
        NotADirectoryError: the nearest existing folder above ``out`` is a file.
    """
    path = Path(out).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"out {out!r} is a folder; give the file to write")
    existing = next((parent for parent in path.parents if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise NotADirectoryError(f"out {out!r}: {str(existing)!r} is a file, not a folder")


def cross_validate(
    protocol: str,
    out: str,
    root: str | None = None,
    init_checkpoint: str | None = None,
    methods: str | tuple[str, ...] = "pretrained,random,cnn",
    folds: str | tuple[int, ...] | None = None,
    num_folds: int | None = None,
    cache_dir: str = "demo_output/cache",
    per_class: int | None = None,
    max_train: int | None = None,
    synthetic_images: int | None = None,
    data_seed: int = 0,
    tracking: str | None = None,
    tracking_uri: str | None = None,
    **overrides: object,
) -> None:
    """Fine-tune and test every fold; print and write the mean +/- std table (``OUT/cv_table.md``).

    Args:
        protocol: synthetic, subtle, busbra, mmotu, gist514, folder or csv; segmentation (usf_mae_segment bundle):
            synthetic-seg, busbra-seg, mmotu-seg, busi or image-mask-folders.
        out: results folder.
        root: dataset folder (not for synthetic).
        init_checkpoint: pretrained weights for the "pretrained" start.
        methods: comma-separated starts: pretrained, random, cnn, and NAME=CHECKPOINT for a start from that file
            reported as NAME (e.g. random,released=usf_mae_100ep.pth,ours=models/model.pt compares two checkpoints
            with a random start on the same folds; a path with a comma needs a link without one).
        folds: comma-separated fold indices to run (default all).
        num_folds: how many folds to split a dataset into (folder, csv, busi, image-mask-folders); default 5.
            busbra and busbra-seg take 5 or 10 (the official files). Fewer folds let a class with few images be
            tested.
        cache_dir: where the synthetic benchmark is generated.
        per_class: synthetic benchmark images per class (synthetic, subtle; default 60).
        max_train: at most this many labelled images (training + validation) per run (default 100 for synthetic and
            subtle, 50 for synthetic-seg, none for a dataset; folder, busi and image-mask-folders take it too).
        synthetic_images: images of the simulated segmentation set (synthetic-seg; default 75).
        data_seed: seed of a generated set (synthetic, subtle, synthetic-seg) and of the folds and validation parts
            of any protocol that draws them; another value draws other images and other splits, to repeat a
            comparison on new data (``--seed`` is the bundles' seed).
        tracking: MLflow tracking settings (bundles/usf_mae_classify/configs/mlflow_tracking.yaml): a parent run
            with one nested run per fold.
        tracking_uri: MLflow server or store (default MLFLOW_TRACKING_URI, else SQLite under OUT).
        overrides: any classification-bundle override, e.g. --arch ... --epochs 20 --image_size 128.
    """
    from monai_ext.apps.crossval import (
        GENERATED_PROTOCOLS,
        check_protocol_name,
        check_run_inputs,
        dataset_options,
        protocol_by_name,
        refuse_generator_options,
        task_of,
    )
    from monai_ext.apps.crossval import cross_validate as run_cv

    check_protocol_name(protocol)  # first: the protocol decides which bundle the other inputs are checked against
    _require_seed(data_seed)
    if num_folds is not None:
        _require_fold_count(num_folds)
    for name, value in (("max_train", max_train), ("per_class", per_class), ("synthetic_images", synthetic_images)):
        if value is not None:
            _require_count(name, value)
    # before any data is generated or read: a bad start, checkpoint or bundle setting fails in a second, not later
    check_run_inputs(_as_list(methods), init_checkpoint, {"cache_dir": cache_dir, **overrides}, task_of(protocol),
                     tracking)
    refuse_generator_options(protocol, per_class=per_class, synthetic_images=synthetic_images)
    kwargs: dict[str, object] = {}
    if protocol in ("synthetic", "subtle"):
        kwargs = {"per_class": 60 if per_class is None else per_class,
                  "max_train": 100 if max_train is None else max_train, "seed": data_seed}
    elif protocol == "synthetic-seg":
        kwargs = {"num": 75 if synthetic_images is None else synthetic_images,
                  "max_train": 50 if max_train is None else max_train, "seed": data_seed}
    else:
        kwargs = dataset_options(protocol, num_folds, data_seed, max_train)
    if num_folds is not None and protocol in GENERATED_PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is generated with 5 folds: --num_folds does not apply to it")
    with _named_num_folds(num_folds):
        proto = protocol_by_name(protocol, root, cache_dir, **kwargs)
    fold_list = _int_list("folds", folds) if folds not in (None, "") else None
    record = run_cv(proto, out, _as_list(methods), init_checkpoint, fold_list, {"cache_dir": cache_dir, **overrides},
                    tracking, tracking_uri, task_of(protocol))
    print(record["table"])


def _int_list(name: str, value: object) -> list[int]:
    """``"10,25"`` or fire's tuple ``(10, 25)`` or a single ``10`` -> ``[10, 25]``; anything else a user error."""
    items = _as_list(value)
    if not items or not all(v.isdigit() for v in items):
        raise ValueError(f"--{name} must be comma-separated whole numbers, got {value!r}")
    return [int(v) for v in items]


def label_efficiency(
    out: str,
    init_checkpoint: str,
    protocol: str = "subtle",
    root: str | None = None,
    counts: object = "10,25,50,100",
    repeats: int = 3,
    cache_dir: str = "demo_output/cache",
    per_class: int | None = None,
    data_seed: int = 0,
    val_fraction: float = 0.2,
    num_folds: int | None = None,
    **overrides: object,
) -> None:
    """Full fine-tuning (the classification bundle, layer decay) from INIT_CHECKPOINT and from a random start with
    10, 25, 50 and 100 labelled images per class, tested on each repeat's held-out images; writes
    OUT/label_efficiency.{json,md,png} and prints the table.

    Args:
        out: results folder.
        init_checkpoint: the pretrained start (the pretraining bundle's models/model.pt or any MAE file).
        protocol: subtle, synthetic, busbra, mmotu, gist514, folder or csv (repeat r uses its fold r).
        root: dataset folder (not for subtle or synthetic).
        counts: comma-separated labelled images per class (training + validation), each at least 2.
        repeats: runs per count and start (folds of the protocol), mean +/- std and paired 95 % intervals over them
            (an unadjusted paired t, too narrow as the repeats share training images).
        cache_dir: where the generated benchmarks are written.
        per_class: images per class of a generated benchmark (default: enough for the largest count plus a fifth
            for testing).
        data_seed: seed of a generated benchmark (subtle, synthetic) and of its folds, and of the draw of the
            labelled images (repeat r draws with data_seed + r), as in cross-validate; ``--seed`` is the bundles'.
        val_fraction: share of each count held out for validation.
        num_folds: how many folds a dataset read from ROOT is split into (folder, csv; busbra: 5 or 10); repeat r
            tests on fold r, so repeats may not exceed it. Default 5.
        overrides: any classification-bundle override, e.g. --arch ... --image_size 128 --epochs 30 --seed 1.
    """
    from monai_ext.apps.crossval import check_run_inputs
    from monai_ext.apps.label_efficiency import STARTS, check_counts, check_repeats, curve_protocol
    from monai_ext.apps.label_efficiency import label_efficiency as run_curve

    for name, value, kind in (("repeats", repeats, int), ("val_fraction", val_fraction, float)):
        _require_number(name, value, kind if kind is int else (int, float))
    _require_seed(data_seed)
    if not 0 < val_fraction < 0.5:  # here, not once a benchmark is generated or a dataset read
        raise ValueError(f"--val_fraction must be in (0, 0.5), got {val_fraction!r}")
    if per_class is not None:
        _require_count("per_class", per_class)
    if num_folds is not None:
        _require_fold_count(num_folds)
    count_list = check_counts(_int_list("counts", counts))
    check_repeats(protocol, repeats, num_folds)  # before a benchmark is generated for repeats it cannot hold
    check_run_inputs(STARTS, init_checkpoint, {"cache_dir": cache_dir, **overrides}, "classify", None,
                     "label-efficiency")
    with _named_num_folds(num_folds):
        proto = curve_protocol(protocol, root, cache_dir, count_list, per_class, data_seed, num_folds)
    record = run_curve(proto, out, init_checkpoint, count_list, repeats, {"cache_dir": cache_dir, **overrides},
                       val_fraction, data_seed)
    print(record["table"])
    print(f"figure: {record['outputs']['png']}")


#: a data seed plus a fold or repeat index must stay a valid NumPy / scikit-learn seed (below 2**32)
_MAX_DATA_SEED = 2**31


def _require_seed(value: object) -> None:
    """``--data_seed``: a whole number from 0 (scikit-learn refuses negative seeds deep inside a split)."""
    _require_number("data_seed", value, int)
    if not 0 <= value < _MAX_DATA_SEED:  # type: ignore[operator]
        raise ValueError(f"--data_seed must be a whole number from 0 to {_MAX_DATA_SEED - 1}, got {value!r}")


def _require_fold_count(value: object) -> None:
    """``--num_folds``: a whole number of at least 2 (one fold tests everything and trains on nothing), named as
    typed; the protocol's loader would say ``folds must be ...``, the option of make-datalist."""
    _require_number("num_folds", value, int)
    if value < 2:  # type: ignore[operator]
        raise ValueError(f"--num_folds must be a whole number of at least 2, got {value!r}")


@contextlib.contextmanager
def _named_num_folds(num_folds: int | None) -> Iterator[None]:
    """Name ``--num_folds`` in the loader's refusal of too many folds for the dataset (``folds must be an integer
    from 2 to 4 ...``): the loaders speak of ``folds``, which is make-datalist's option and another option here."""
    try:
        yield
    except ValueError as e:
        if num_folds is None or not str(e).startswith("folds must be "):
            raise
        raise ValueError(f"--num_{e}") from None


def _require_count(name: str, value: object) -> None:
    """A count of images: a whole number of at least 1 (0 is no default in disguise)."""
    _require_number(name, value, int)
    if value < 1:  # type: ignore[operator]
        raise ValueError(f"--{name} must be a whole number of at least 1, got {value!r}")


def _require_number(name: str, value: object, kind: type | tuple[type, ...]) -> None:
    """fire passes a value it cannot parse as a number on as a string: name it (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, kind):
        # ValueError, not TypeError: main() reports ValueErrors as user errors (one line, exit code 2)
        raise ValueError(f"--{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")


def prepare_corpus(
    root: str,
    out: str,
    size: int = 256,
    workers: int = 1,
    frame_stride: int = 1,
    slice_axis: int = 2,
    slice_stride: int = 1,
    modality: str | None = None,
    dedup_threshold: int = 6,
    exclude_datasets: object = (),
    evaluation: object = (),
    files_per_chunk: int = 64,
    crop_fov: bool = True,
    deannotate: bool = True,
    doppler: str = "inpaint",
    doppler_threshold: float = 0.02,
    split_views: bool = True,
) -> None:
    """Ingest ROOT/<dataset>/... into a memory-mapped cache at OUT (resumable: rerun the same command).

    Args:
        root: folder with one sub-folder per dataset (symbolic links followed); files directly in it form one
            dataset named after it.
        out: cache folder (chunks, manifest.csv, kept.npy, report.json, report.png).
        size: side of the cached square frames.
        workers: parallel processes.
        frame_stride: every n-th frame of a cine loop (and page of a multi-page TIFF, time point of a 4-D volume).
        slice_axis: the axis along which volumes are cut into frames.
        slice_stride: every n-th slice of a volume.
        modality: keep only DICOM files of this Modality, e.g. US.
        dedup_threshold: perceptual-hash distance (bits of 64, of the field of view) for near-duplicates (-1: exact
            duplicates only).
        exclude_datasets: dataset folder names to leave out, comma-separated.
        evaluation: evaluation folders whose images must not be in the corpus, comma-separated (every frame of
            every file, whatever modality and strides; near matches within at least 8 bits).
        files_per_chunk: files per unit of work and of resuming.
        crop_fov: crop to the DICOM region or the detected field of view.
        deannotate: remove burned-in text, calipers, markers and overlays on the colour frame (true|false).
        doppler: colour-Doppler flow: inpaint (fill from the B-mode around), drop (also leave out frames whose flow
            covers more than doppler_threshold of the field of view) or keep (as gray luma).
        doppler_threshold: flow fraction of the field of view above which --doppler drop leaves a frame out.
        split_views: one frame per view on multi-view screens: side by side, or a 2 x 2 quad grid (true|false).
    """
    from monai_ext.data.corpus import CorpusOptions
    from monai_ext.data.corpus import prepare_corpus as prepare
    from monai_ext.data.frames import FrameOptions

    for name, value, kind in (("size", size, int), ("workers", workers, int), ("frame_stride", frame_stride, int),
                              ("slice_axis", slice_axis, int), ("slice_stride", slice_stride, int),
                              ("dedup_threshold", dedup_threshold, int), ("files_per_chunk", files_per_chunk, int),
                              ("doppler_threshold", doppler_threshold, (int, float))):
        _require_number(name, value, kind)
    frames = FrameOptions(frame_stride, slice_axis, slice_stride, modality)
    options = CorpusOptions(size=size, crop_fov=crop_fov, files_per_chunk=files_per_chunk, frames=frames,
                            dedup_threshold=dedup_threshold, deannotate=deannotate, doppler=doppler,
                            doppler_threshold=doppler_threshold, split_views=split_views)
    report = prepare(root, out, options, workers, _as_list(exclude_datasets), _as_list(evaluation))
    print(f"{report['kept']} of {report['frames']} frames kept; removed: {report['removed']}; "
          f"skipped files: {len(report['skipped_files'])}; files read with readers' warnings: "
          f"{len(report['reader_warnings'])} (reasons and warnings in {out}/report.json, overview in {out}/report.png)")
    _require_kept_frames(report, out)


def _require_kept_frames(report: Mapping[str, object], out: str) -> None:
    """An archive of which nothing was kept is a failure (exit code 2), not an empty cache that pretraining refuses
    later: the reasons are named here, where the user looks.

    Raises:
        ValueError: with the first skip reason and the removal counts.
    """
    if report["kept"]:
        return
    skipped = report["skipped_files"]
    first = f"; first skipped: {skipped[0]['reason']}" if skipped else ""
    raise ValueError(f"no frame was kept of {report['frames']} read ({len(skipped)} file(s) skipped{first}; removed: "
                     f"{report['removed']}): see {out}/report.json")


def bundle_path(name: str) -> None:
    """Print the folder of bundle ``name`` (usf_mae_pretrain, usf_mae_classify or usf_mae_segment) that came with
    this package.

    After ``pip install``: ``python -m monai.bundle run --config_file "$(monai-ext bundle-path usf_mae_classify)/
    configs/train.yaml" --ckpt_dir ... --output_dir ... --cache_dir ...`` from any folder.

    Args:
        name: the bundle (usf_mae_pretrain, usf_mae_classify or usf_mae_segment).
    """
    from monai_ext.apps.bundle_support import bundle_path as locate

    try:
        print(locate(name))
    except ValueError as e:
        print(f"monai_ext bundle-path: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def export_onnx(checkpoint: str, out: str, opset: int = 18, tolerance: float = 1e-4) -> None:
    """Export a classification-bundle checkpoint to ONNX (input "image" (N, C, H, W), output "pred" logits (N, K),
    N dynamic) and check onnxruntime's outputs against the eager model's on random images.

    Args:
        checkpoint: the classification bundle's models/model.pt.
        out: the .onnx file to write.
        opset: ONNX opset version.
        tolerance: largest allowed absolute difference of the logits.
    """
    from monai_ext.networks.export import MissingPackagesError, export_checkpoint_onnx

    _check_output_file(out)  # before the export runs
    try:
        info = export_checkpoint_onnx(checkpoint, out, opset, tolerance)
    except MissingPackagesError as e:  # an ImportError, which main() leaves to a traceback: what to install is known
        print(f"monai_ext export-onnx: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    named = f"for {info['class_names']}" if info["class_names"] else "(the checkpoint records no class names)"
    print(f"{info['path']}: input image (N, {', '.join(map(str, info['input_shape']))}), output pred (N, "
          f"{info['num_classes']}) logits {named}; class names and preprocessing in its metadata_props; onnxruntime "
          f"matches eager within {info['max_difference']:.2e}")


def _coerce(name: str, value: object, hint: object) -> object:
    """``value`` as fire parsed it, checked against the parameter's annotation: fire passes on whatever it cannot
    parse as a Python literal as a string (``--num abc``, ``--screen_capture no``), so check here, naming the option.

    Raises:
        ValueError: the value does not fit (main() reports it as one line, exit code 2).
    """
    from monai_ext.apps.bundle_support import FLAG_WORDS

    if hint in (None, object, inspect.Parameter.empty):
        return value
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in members:
        return None
    if bool in members:
        if isinstance(value, bool):
            return value
        if str(value).lower() in FLAG_WORDS:
            return FLAG_WORDS[str(value).lower()]
        raise ValueError(f"--{name} must be true or false, got {value!r}")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    for member in members:
        kind = typing.get_origin(member) or member
        if (kind is int and is_number and isinstance(value, int)) or (kind is str and isinstance(value, str)):
            return value
        if kind is float and is_number:
            return float(value)
        if kind in (tuple, list) and isinstance(value, (tuple, list)):
            return value
    if int in members:
        raise ValueError(f"--{name} must be an integer, got {value!r}")
    if float in members:
        raise ValueError(f"--{name} must be a number, got {value!r}")
    if str in members:  # a path, name or digest that fire read as a number or a comma-separated tuple
        return setting_text(value, f"--{name}")
    return value


def _typed(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with every argument checked against its annotation before it runs (``**overrides`` pass through
    to the bundles unchecked). fire reads the signature of the wrapped function, so ``--help`` is unchanged."""
    signature, hints = inspect.signature(command), typing.get_type_hints(command)

    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> None:
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            if signature.parameters[name].kind is not inspect.Parameter.VAR_KEYWORD:
                bound.arguments[name] = _coerce(name, value, hints.get(name))
        return command(*bound.args, **bound.kwargs)

    return run


COMMANDS = {
    "synthesize": synthesize,
    "inspect-checkpoint": inspect_checkpoint,
    "convert-checkpoint": convert_checkpoint,
    "make-datalist": make_datalist,
    "cross-validate": cross_validate,
    "label-efficiency": label_efficiency,
    "prepare-corpus": prepare_corpus,
    "bundle-path": bundle_path,
    "export-onnx": export_onnx,
}
COMMANDS = {name: _typed(command) for name, command in COMMANDS.items()}



def _one_line_fire_error(component_trace: object) -> None:
    """fire's own usage errors (a missing argument, an unknown command or flag) as one line; fire would print the
    whole usage text after it. ``--help`` output is unchanged."""
    element = component_trace.elements[-1]
    if {"-h", "--help"} & set(element.args or ()):
        _FIRE_DISPLAY_ERROR(component_trace)
        return
    print(f"monai_ext: {element.ErrorAsStr()} (see --help)", file=sys.stderr)


_FIRE_DISPLAY_ERROR = fire.core._DisplayError  # fire has no public hook for how usage errors are shown


def _check_options(args: list[str]) -> list[str]:
    """Refuse an option the command does not have before it runs: fire would run the command with the others and
    only then complain about the leftover (an hour of ingestion, then an error about a misspelt flag). Returns the
    arguments with each short flag that ``--help`` shows (``-n`` where one option starts with n) in its long form."""
    command = next((a for a in args if not a.startswith("-")), None)
    function = COMMANDS.get(command or "")
    end = args.index("--") if "--" in args else len(args)  # after "--" come fire's own flags
    if function is None:
        if command is not None:  # fire would say only "Cannot find key: bogus"
            near = f" (did you mean {command.replace('_', '-')}?)" if command.replace("_", "-") in COMMANDS else ""
            raise ValueError(f"unknown command {command!r}{near}; the commands are {', '.join(COMMANDS)} (see "
                             "--help)")
        return args
    if {"-h", "--help"} & set(args):  # after "--" too: fire ran the command first, then showed its result's help
        # fire takes --help as a request for help only before the arguments or after "--"; anywhere else the
        # command ran (a whole ingestion, a datalist overwritten) and its result's help was shown after it
        return [command, "--", "--help"]
    parameters = inspect.signature(function).parameters
    forwards = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())  # bundle overrides
    args = [_long_form(arg, parameters, forwards) if i < end else arg for i, arg in enumerate(args)]
    _refuse_repeated_options(args[:end], parameters)
    _refuse_stray_words(command, args[:end], parameters)
    if forwards:
        return args
    for arg in args[:end]:
        if arg.startswith("--") and len(arg) > 2:
            name = _option_name(arg)
            if name not in parameters and not (name.startswith("no") and name[2:] in parameters):
                raise ValueError(f"unknown option {arg.split('=', 1)[0]} (see --help for the options)")
    return args


def _option_name(arg: str) -> str:
    """``--fold-count=3`` -> ``fold_count``; ``--noflag`` stays ``noflag`` (fire's negation, checked by name)."""
    return arg[2:].split("=", 1)[0].replace("-", "_")


def _refuse_repeated_options(args: list[str], parameters: Mapping[str, inspect.Parameter]) -> None:
    """Refuse an option given twice, also as its negation (``--nocrop_fov``): fire keeps the last value without a
    word (``--fold 0 --fold 1``)."""
    seen: dict[str, str] = {}
    for arg in args:
        if arg.startswith("--") and len(arg) > 2:
            name = _option_name(arg)
            name = name[2:] if name.startswith("no") and name not in parameters and name[2:] in parameters else name
            if name in seen:
                raise ValueError(f"option --{name} given twice; give it once")
            seen[name] = arg


def _refuse_stray_words(command: str, args: list[str], parameters: Mapping[str, inspect.Parameter]) -> None:
    """Refuse plain words beyond the command's required arguments: fire gives them to the next parameters in order,
    so ``--folds 0 9`` ran fold 0 only, with ``9`` taken as ``--root`` (ignored by a generated protocol).

    A word after ``--name`` (without ``=``) is that option's value, as fire reads it.
    """
    required = [name for name, p in parameters.items()
                if p.default is inspect.Parameter.empty and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    named = {_option_name(arg) for arg in args if arg.startswith("--")}
    room = len([name for name in required if name not in named])
    words, index = [], args.index(command) + 1
    while index < len(args):
        arg = args[index]
        if arg.startswith("--"):
            takes_next = "=" not in arg and index + 1 < len(args) and not args[index + 1].startswith("--")
            index += 2 if takes_next else 1
            continue
        words.append(arg)
        index += 1
    if len(words) > room:
        expected = " ".join(name.upper() for name in required if name not in named) or "no further plain words"
        raise ValueError(f"unexpected argument {words[room]!r}: {command} takes {expected}, and every other setting "
                         "as --name value (lists are comma-separated: --folds 0,1)")


def _long_form(arg: str, parameters: Mapping[str, inspect.Parameter], forwards: bool) -> str:
    """``-n`` (or ``-n=3``) as ``--num`` where ``num`` is the one option starting with n, as fire's help shows it;
    any other dash word is refused in one line (fire would guess, or complain only after the run)."""
    if not re.fullmatch(r"-[A-Za-z][\w-]*(=.*)?", arg):
        return arg
    flag, _, value = arg.partition("=")
    named = [name for name in parameters if name.startswith(flag[1:])] if len(flag) == 2 and not forwards else []
    if len(named) != 1:
        raise ValueError(f"unknown option {flag}: use the long --name form (see --help)")
    return f"--{named[0]}" + (f"={value}" if value else "")


#: What a command interrupted midway keeps, said when Ctrl-C stops it.
INTERRUPTED_HINTS = {
    "prepare-corpus": "; the chunks already written are kept: rerun the same command to resume",
    "cross-validate": "; the folds already finished are kept: rerun the same command with --resume true to continue",
    "label-efficiency": "; the runs already finished are kept: rerun the same command with --resume true to continue",
}


def _fold_failure(error: BaseException, command: str) -> int | None:
    """Show a cross-validation fold or label-efficiency run that failed in one line naming it, what is kept and how
    to go on (:class:`~monai_ext.apps.crossval.FoldFailed`), and return the exit code: 2 for a user's mistake inside
    it, 1 for a fault, whose traceback is shown first (it is a fault to debug). None for any other error."""
    if command not in ("cross-validate", "label-efficiency"):
        return None
    from monai_ext.apps.crossval import FoldFailed

    if not isinstance(error, FoldFailed) or traceback_wanted():
        return None
    fault = user_error_in(error.__cause__) is None if error.__cause__ is not None else True
    if fault:
        traceback.print_exception(error.__cause__, file=sys.stderr)
    print(f"monai_ext {command}: {one_line(str(error))}", file=sys.stderr)
    return 1 if fault else 2


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m monai_ext`` and the ``monai-ext`` script: user errors end in one line on stderr
    and exit code 2, whatever the command."""
    args = argv if argv is not None else sys.argv[1:]
    fire.core._DisplayError = _one_line_fire_error
    try:
        with typed_command_line(args):  # fire reads 2024_01 as 202401: text settings take back what was typed
            fire.Fire(COMMANDS, command=_check_options(args), name="monai_ext")
    except KeyboardInterrupt:  # Ctrl-C is the user's choice: what to do next, not a traceback
        command = next((a for a in args if not a.startswith("-")), "")
        print(f"monai_ext {command}: interrupted{INTERRUPTED_HINTS.get(command, '')}", file=sys.stderr)
        raise SystemExit(130) from None  # the shell's code for SIGINT
    except Exception as e:  # MONAI wraps a user error of an in-process bundle run (cross-validate) in RuntimeErrors
        code = _fold_failure(e, next((a for a in args if not a.startswith("-")), ""))
        if code is not None:
            raise SystemExit(code) from None
        cause = user_error_in(e)
        if cause is None or traceback_wanted():
            raise  # a library's own ValueError (torch, scikit-learn) is a fault to debug: keep its traceback
        command = next((a for a in args if not a.startswith("-")), "")
        print(f"monai_ext {command}: {one_line(str(cause))}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        fire.core._DisplayError = _FIRE_DISPLAY_ERROR


if __name__ == "__main__":
    main()
