"""Small helpers that the bundle configs call: locating the bundle, choosing a recipe, initial weights."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from monai_ext.io.settings import is_unset, path_list_setting, path_setting, setting_text
from monai_ext.networks.checkpoints import (
    FORMAT_NAME,
    CheckpointError,
    check_class_count,
    check_shapes,
    detect_layout,
    filter_monai_ext,
    load_encoder_weights,
    load_mae_weights,
    read_checkpoint,
    sha256_of,
)

logger = logging.getLogger(__name__)
BUNDLE_NAMES = ("usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment")


def shipped_bundles_dir() -> Path:
    """The folder holding the bundles that came with this package.

    Installed (``pip install .``: ``setup.py`` ships ``bundles/`` as ``monai_ext/bundles``), that is the package's
    data folder; in a checkout or an editable install, the repository's ``bundles/`` beside the package.
    """
    installed = Path(str(resources.files("monai_ext").joinpath("bundles")))
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "bundles"


def _bundle_name(folder: Path) -> str | None:
    meta = folder / "configs" / "metadata.json"
    try:
        return json.loads(meta.read_text()).get("name")
    except (OSError, ValueError):
        return None


def bundle_path(name: str) -> Path:
    """The folder of the bundle ``name`` that ships with this package (installed or in a checkout).

    Raises:
        ValueError: an unknown bundle name, or a broken installation without it.
    """
    if name not in BUNDLE_NAMES:
        raise ValueError(f"unknown bundle {name!r}; choose one of {list(BUNDLE_NAMES)}")
    folder = shipped_bundles_dir() / name
    if _bundle_name(folder) != name:
        raise ValueError(f"bundle {name!r} is missing from {str(folder.parent)!r}; reinstall the package")
    return folder


def locate_bundle_root(name: str) -> str:
    """Find bundle ``name`` so that commands work from the bundle folder, the repository root or anywhere else.

    Looks in this order: the current folder (when it is that bundle), ``./bundles/<name>``, and the copy that ships
    with this package (:func:`bundle_path`; in a checkout, the repository's). Override with ``--bundle_root`` to use
    a bundle elsewhere.
    """
    cwd = Path.cwd()
    for candidate in (cwd, cwd / "bundles" / name):
        if _bundle_name(candidate) == name:
            return str(candidate)
    try:
        return str(bundle_path(name))
    except ValueError as e:
        raise ValueError(f"cannot find bundle {name!r} from {str(cwd)!r} ({e}); pass --bundle_root /path/to/{name}") \
            from e


def select_recipe(recipes: Mapping[str, Any], name: str) -> Any:
    """The recipe preset called ``name``."""
    if name not in recipes:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(recipes)}")
    return recipes[name]


def initialize_weights(
    network: torch.nn.Module, checkpoint: str | os.PathLike | None, sha256: str | None = None, encoder_only: bool = False
) -> str:
    """Load initial weights (released USF-MAE, Facebook MAE, MONAI, timm or this project's), or keep random ones.

    Returns:
        A one-line summary of what was loaded, also logged.
    """
    checkpoint = path_setting(checkpoint, "init_checkpoint")
    if checkpoint is None:
        summary = "random initialisation"
    else:
        summary = _load_content(network, read_checkpoint(checkpoint, None if is_unset(sha256) else sha256),
                                checkpoint, encoder_only)
    logger.info("initial weights: %s", summary)
    return summary


def _trained_with(content: Mapping[str, Any]) -> str:
    """``arch=..., image_size=..., in_channels=...`` as a checkpoint's record states them (for error messages)."""
    record = content.get("arch")
    if not isinstance(record, Mapping):  # another script's {"arch": "vit_base", "state_dict": ...}: no record
        return ""
    config, arch_args = record.get("config") or {}, record.get("arch_args") or {}
    found = {"arch": recorded_arch(record), "image_size": config.get("image_size"), "in_channels": arch_args.get("in_chans")}
    return ", ".join(f"{key}={value!r}" for key, value in found.items() if value is not None)


def _load_content(network: torch.nn.Module, content: Any, name: str, encoder_only: bool) -> str:
    """Load a read checkpoint into ``network`` (see :func:`initialize_weights`); returns the one-line summary.

    Raises:
        CheckpointError: a project file of another kind than an MAE for an MAE (a fine-tuned classifier has no
            decoder to continue from), or ``encoder_only`` for an MAE, named with what to give instead.
    """
    from monai_ext.networks.mae import MaskedAutoencoderViT

    if isinstance(network, MaskedAutoencoderViT):
        check_kind(content, name, "usf_mae_pretrain")  # before torch's list of missing and unexpected keys
        if encoder_only:
            raise CheckpointError("init_options encoder_only applies to fine-tuning bundles: pretraining continues "
                                  "a whole MAE (released USF-MAE, Facebook MAE, this bundle's models/model.pt)")
    try:
        layout = detect_layout(content)
    except CheckpointError as e:  # the layout's refusal ("unrecognised checkpoint layout") names no file
        raise CheckpointError(f"{name}: {e}") from e
    if layout == "monai_ext" and content["arch"].get("kind") != "mae":
        state_dict = filter_monai_ext(content)
        if encoder_only and _transfers_encoder(network, content["arch"].get("kind"), state_dict):
            report = load_encoder_weights(network, content, name=name)
            kept = _keep_pooling_norm(network, state_dict)
            return (f"{name}: the encoder of a {content['arch']['kind']} (head or decoder new here){kept}; "
                    f"{report.summary()}")
        # A file of this same kind of network (a classifier or an external CNN): everything must match.
        try:
            check_shapes(state_dict, network, name)
        except CheckpointError as e:
            trained = _trained_with(content)
            raise CheckpointError(f"{e}; the checkpoint was trained with {trained} (pass those, or leave them to "
                                  "the checkpoint's record)" if trained else str(e)) from e
        network.load_state_dict(state_dict, strict=True)
        return f"{name}: all {len(state_dict)} tensors (strict)"
    load = load_encoder_weights if encoder_only else load_mae_weights
    try:
        return f"{name}: {load(network, content, name=name).summary()}"
    except CheckpointError as e:  # e.g. a ViT-Tiny 64-px MAE of this project into the default ViT-B 224 network
        trained = _trained_with(content) if layout == "monai_ext" else ""
        if not trained:
            raise
        raise CheckpointError(f"{e}; the checkpoint was trained with {trained} (pass those)") from e


def _keep_pooling_norm(network: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    """Copy a fine-tuned average-pooling classifier's ``fc_norm`` into one that pools the same way (transfer to a new
    class count keeps all but the head); returns a note for the load's summary, empty where nothing was copied."""
    target = network.state_dict()
    keys = [k for k in ("fc_norm.weight", "fc_norm.bias") if k in target]
    if not keys or not all(k in state_dict and state_dict[k].shape == target[k].shape for k in keys):
        return ""
    network.load_state_dict({**target, **{k: state_dict[k] for k in keys}}, strict=True)
    return ", its fc_norm kept"


def _network_kind(network: torch.nn.Module) -> str | None:
    """The checkpoint kind a fine-tuning network is saved as (``classifier`` or ``segmenter``), else ``None``."""
    from monai_ext.networks.classifier import ViTClassifier
    from monai_ext.networks.segmentation import ViTSegmenter

    return {ViTClassifier: "classifier", ViTSegmenter: "segmenter"}.get(type(network))


def _transfers_encoder(network: torch.nn.Module, file_kind: str | None, state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether fine-tuning takes only the encoder of this project's classifier or segmenter file.

    It does where the file is the other kind (a segmenter's encoder starting a classifier, or the reverse) or where
    its head, decoder or pooling does not fit (a classifier of 3 classes starting one of 2: transfer to a new task).
    A file of the same kind that fits whole continues whole; one whose encoder tensors have other shapes (another
    image size or channel count) is left to the strict load, which says what the file was trained with.
    """
    network_kind = _network_kind(network)
    if network_kind is None or file_kind not in ("classifier", "segmenter"):
        return False
    if file_kind != network_kind:
        return True
    target = network.state_dict()
    reshaped = {k for k, v in state_dict.items() if k in target and tuple(v.shape) != tuple(target[k].shape)}
    if reshaped & set(network.encoder_parameter_names()):
        return False
    return bool(reshaped) or set(target) != set(state_dict)


def classification_split(
    datalist_file: str | os.PathLike | None, cache_dir: str | os.PathLike, fold: int = 0, seed: int = 0,
    per_class: int = 60, max_train: int = 100, multiclass: bool = False,
) -> dict[str, Any]:
    """The classification bundle's data: a JSON datalist file, or else fold ``fold`` of the synthetic lesion benchmark.

    Returns:
        ``{"class_names": [...], "train": [...], "validation": [...], "test": [...]}``.
    """
    from monai_ext.data.datalists import read_split
    from monai_ext.data.downstream import folder_protocol
    from monai_ext.data.synthetic import synthetic_lesion_dataset

    datalist_file = path_setting(datalist_file, "datalist_file")
    if datalist_file is not None:
        check_fold_with_datalist(datalist_file, fold)
        return read_split(datalist_file)
    cache_dir = setting_text(cache_dir, "cache_dir")
    folder = synthetic_lesion_dataset(Path(cache_dir), per_class=per_class, multiclass=multiclass, seed=seed)
    protocol = folder_protocol(folder, folds=5, val_fraction=0.2, seed=seed, max_train=max_train)
    if not 0 <= fold < len(protocol.splits):
        raise ValueError(f"fold must be in [0, {len(protocol.splits)}), got {fold!r}")
    return {"class_names": protocol.class_names, **protocol.splits[fold]}


def check_fold_with_datalist(datalist_file: str | os.PathLike | None, fold: Any) -> None:
    """Refuse a non-zero ``--fold`` with a ``--datalist_file``: the datalist is one fold (``make-datalist --fold N``
    chose it), so the setting was ignored, yet recorded in model.pt and MLflow as the fold trained on.

    Raises:
        ValueError: quoting the fold and the datalist.
    """
    if path_setting(datalist_file, "datalist_file") is not None and not is_unset(fold) and str(fold).strip() != "0":
        raise ValueError(f"--fold {fold!r} does not apply to --datalist_file {str(datalist_file)!r}: the datalist is "
                         "one fold; make it with make-datalist --fold N")


def recorded_fold(datalist_file: str | os.PathLike | None, fold: Any) -> int | None:
    """The fold a checkpoint records: None where a datalist (one fold, chosen when it was made) gave the data,
    else ``fold`` of the synthetic default.

    Raises:
        ValueError: as :func:`check_fold_with_datalist`.
    """
    check_fold_with_datalist(datalist_file, fold)
    return None if path_setting(datalist_file, "datalist_file") is not None else fold


def split_part(split: Mapping[str, Any], name: str, purpose: str) -> list[dict[str, Any]]:
    """``split[name]``, refused in one line when it is missing or has no items.

    A hand-written datalist may leave a part empty (a test-only list for ``evaluate``), so :func:`read_split` accepts
    empty parts; the bundle refuses one only when it is about to use it, naming the part and what it was for, instead
    of an error from deep inside the dataset or the sampler.

    Args:
        split: the datalist, as read by :func:`monai_ext.data.datalists.read_split`.
        name: the part (``"train"``, ``"validation"``, ``"test"``).
        purpose: what the items are for, e.g. ``"train on"`` or ``"evaluate"``.

    Raises:
        ValueError: the part is missing or empty.
    """
    items = split.get(name)
    if not items:
        parts = ", ".join(f"{part} {len(split[part])}" for part in ("train", "validation", "test") if split.get(part))
        raise ValueError(f"the datalist has no {name!r} items to {purpose} (items per part: {parts or 'none'})")
    return list(items)


#: What the pretraining bundle's ``evaluate`` scores: the held-out part of ``dataset_dir``, or all of it.
PRETRAIN_EVAL_SPLITS = ("validation", "all")


def pretrain_eval_part(datalists: Mapping[str, Sequence[Mapping[str, Any]]], eval_split: str) -> list[dict[str, Any]]:
    """The images the pretraining ``evaluate`` scores: ``"validation"``, the part training held out of
    ``dataset_dir``; ``"all"``, every image of it, for an archive held out of pretraining altogether (another
    scanner, another site), in file order.

    Args:
        datalists: ``{"train": [...], "validation": [...]}`` of :func:`monai_ext.data.folders.pretrain_datalists`.
        eval_split: one of :data:`PRETRAIN_EVAL_SPLITS`.

    Raises:
        ValueError: another ``eval_split``, quoted.
    """
    if eval_split not in PRETRAIN_EVAL_SPLITS:
        raise ValueError(f"eval_split must be one of {list(PRETRAIN_EVAL_SPLITS)}, got {eval_split!r}")
    items = list(datalists["validation"])
    if eval_split == "all":
        # file order (a corpus cache's frame order), not the split's shuffle: the set is the folder, whatever the seed
        items = sorted([*datalists["train"], *items], key=lambda item: item["image"])  # paths, or frame indices
    logger.info("evaluating the reconstruction loss on %d image(s) (eval_split %s)", len(items), eval_split)
    return [dict(item) for item in items]


# ---------------------------------------------------------------------------------------------------- yes/no settings
#: The words a yes/no setting may be given as, on a bundle's or the CLI's command line.
FLAG_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def as_flag(value: Any, name: str) -> bool:
    """A yes/no bundle setting as a bool, whether it came from YAML or from the command line.

    ``monai.bundle run --resume false`` hands the config the text ``'false'``, which Python reads as true; every
    config reads its yes/no settings through this instead of testing their truth.

    Args:
        value: a bool, the integer 0 or 1 (``--resume 1``), or one of the words true/false, yes/no, 1/0 in any case.
        name: the setting's id, quoted in the error.

    Raises:
        ValueError: anything else, quoting ``name`` and ``value``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in FLAG_WORDS:
        return FLAG_WORDS[value.strip().lower()]
    raise ValueError(f"{name} must be true or false (or yes/no, 1/0), got {value!r}")


# ---------------------------------------------------------------------------------------------------- checkpoints
#: The model kinds (``arch["kind"]`` of :func:`monai_ext.networks.checkpoints.arch_record`) each bundle writes.
BUNDLE_KINDS = {"usf_mae_pretrain": ("mae",), "usf_mae_classify": ("classifier",), "usf_mae_segment": ("segmenter",)}
_KIND_BUNDLE = {kind: bundle for bundle, kinds in BUNDLE_KINDS.items() for kind in kinds}
_KIND_ORIGIN = {"mae": "pretraining, usf_mae_pretrain", "classifier": "a classifier, usf_mae_classify",
                "segmenter": "a segmenter, usf_mae_segment", "external": "an external network without arch_args"}


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return os.path.abspath(os.path.expanduser(a)) == os.path.abspath(os.path.expanduser(b))


def checkpoint_file(path: str | os.PathLike, default_path: str | os.PathLike | None = None) -> Path | None:
    """The checkpoint file to load, or None where the bundle's own default file simply does not exist yet.

    Only ``default_path`` (the bundle's own ``<bundle_root>/models/model.pt``, in an existing bundle folder) may be
    missing: the configs then parse and run with random weights, which MONAI's ``verify_net_in_out`` and
    ``ckpt_export`` need before training. A path the user gave must exist: a ``--ckpt_dir`` or ``--ckpt_path`` with a
    typo, or a run that saved no model, must not give predictions from random weights with exit code 0.

    Raises:
        FileNotFoundError: ``path`` is not ``default_path`` and there is no such file, or the bundle folder of
            ``default_path`` does not exist (a ``--bundle_root`` with a typo).
        ValueError: ``path`` is a folder.
    """
    path = setting_text(path, "ckpt_path")
    if Path(path).is_file():
        return Path(path)
    if Path(path).is_dir():
        raise ValueError(f"ckpt_path {str(path)!r} is a folder, not a checkpoint file (give its model.pt)")
    bundle_folder = Path(os.path.abspath(os.path.expanduser(default_path))).parent.parent if default_path else None
    if default_path is not None and _same_file(path, default_path) and bundle_folder.is_dir():
        return None
    raise FileNotFoundError(f"ckpt_path {str(path)!r}: no such checkpoint file")


def check_kind(content: Any, path: str | os.PathLike, bundle: str, kinds: Sequence[str] | None = None) -> None:
    """Refuse a project checkpoint whose recorded kind is not one ``bundle`` can use (files without a record pass).

    Raises:
        CheckpointError: naming the file, its kind and what to do with it instead.
    """
    accepted = tuple(kinds) if kinds is not None else BUNDLE_KINDS[bundle]
    record = content.get("arch") if isinstance(content, Mapping) else None
    if not isinstance(record, Mapping) or record.get("format") != FORMAT_NAME:
        return
    kind = record.get("kind")
    if kind in accepted:
        return
    if kind == "mae" and bundle != "usf_mae_pretrain":
        advice = f"fine-tune it with {bundle} first (--init_checkpoint {str(path)})"
    elif kind in _KIND_BUNDLE:
        advice = f"use it with the {_KIND_BUNDLE[kind]} bundle"
    else:
        advice = "this config cannot rebuild it"
    raise CheckpointError(f"{str(path)} is a checkpoint of kind {kind!r} ({_KIND_ORIGIN.get(kind, 'unknown')}), "
                          f"but {bundle} needs kind {' or '.join(repr(k) for k in accepted)}; {advice}")


#: The pretraining bundle's data and split settings its checkpoints record, read back by its evaluate overlay.
PRETRAIN_DATA_SETTINGS = ("dataset_dir", "num_synthetic", "val_fraction", "seed", "data_seed")
#: How the pretraining bundle scored its loss, recorded too (since 0.6.17): evaluate and inference score the same way.
PRETRAIN_SCORING_SETTINGS = ("mask_ratio", "deannotate")
#: The fine-tuning bundles' data settings their checkpoints record (classify 0.6.19, segment 0.1.18), read back by
#: their evaluate overlays: a model trained on fold 2, or on a synthetic set of another size, was tested on fold 0 of
#: the default set, whose test part holds images it was trained on.
FINETUNE_DATA_SETTINGS = ("datalist_file", "fold", "seed", "data_seed", "synthetic_per_class", "synthetic_multiclass",
                          "synthetic_images", "max_train")


def recorded_path(value: Any, name: str) -> str | None:
    """A path setting as a checkpoint records it: absolute (the run may start elsewhere), None when unset."""
    path = path_setting(value, name)
    return None if path is None else os.path.abspath(str(path))


def recorded_dataset_dir(trained: Mapping[str, Any], ckpt_path: str | os.PathLike) -> str | None:
    """The pretraining data folder a checkpoint records (:data:`PRETRAIN_DATA_SETTINGS`), for the evaluate overlay;
    None (the synthetic default) where it records none.

    Raises:
        ValueError: the recorded folder is not here (the data moved, or the model came from another machine),
            saying that the path came from the checkpoint and that ``--dataset_dir`` replaces it.
    """
    return _recorded_here(trained.get("dataset_dir"), ckpt_path, os.path.isdir, "pretrained on", "a folder",
                          "--dataset_dir (that data where it is now, or another archive with --eval_split all)")


def _recorded_here(path: str | None, ckpt_path: str | os.PathLike, exists: Callable[[str], bool], trained_on: str,
                   kind: str, remedy: str) -> str | None:
    """``path`` as a checkpoint records it, once it exists here.

    Raises:
        ValueError: it does not, saying that the path came from the checkpoint and what replaces it.
    """
    if path is not None and not exists(path):
        raise ValueError(f"{ckpt_path} was {trained_on} {path!r}, which is not {kind} here (moved, or the model "
                         f"comes from another machine): give {remedy}")
    return path


def recorded_datalist(trained: Mapping[str, Any], ckpt_path: str | os.PathLike) -> str | None:
    """The datalist a fine-tuned checkpoint records (:data:`FINETUNE_DATA_SETTINGS`), for the evaluate overlays; None
    (the synthetic default) where it records none.

    Raises:
        ValueError: the recorded datalist is not here, saying that the path came from the checkpoint and that
            ``--datalist_file`` replaces it (a "datalist not found" named a file the user never gave).
    """
    return _recorded_here(trained.get("datalist_file"), ckpt_path, os.path.isfile, "trained on the datalist",
                          "a file", "--datalist_file (that list where it is now, or another test set)")


#: What a fine-tuned classifier's or segmenter's checkpoint records of the images it trained on: the SHA-256 of its
#: ``datalist_file`` and the sorted paths of the datalist's training and validation images, relative to the datalist's
#: folder. Evaluate and cross-validate warn from them of test images the model trained or was selected on (another
#: datalist whose test part holds them, or the recorded datalist edited since). Checkpoints without them pass silently.
TRAINED_IMAGES_SETTINGS = ("datalist_sha256", "trained_images")


def datalist_sha256(datalist_file: str | os.PathLike | None) -> str | None:
    """The SHA-256 of the datalist a run reads, for its checkpoint's record; None without one (the synthetic
    default, which its seed and fold regenerate)."""
    path = path_setting(datalist_file, "datalist_file")
    return None if path is None else sha256_of(path)


def trained_images(datalist_file: str | os.PathLike | None, split: Mapping[str, Any]) -> list[str] | None:
    """The training and validation images of ``split``, sorted, relative to the datalist's folder, for the
    checkpoint's record (:data:`TRAINED_IMAGES_SETTINGS`); None without a datalist."""
    path = path_setting(datalist_file, "datalist_file")
    if path is None:
        return None
    # both real paths: relpath works on the text, and a folder reached through a link at another depth put the
    # record's ".." steps elsewhere once resolved (:func:`recorded_trained_images`), so no trained image matched
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    return sorted({Path(os.path.relpath(os.path.realpath(str(item["image"])), folder)).as_posix()
                   for part in ("train", "validation") for item in split.get(part) or []})


def recorded_trained_images(config: Mapping[str, Any]) -> set[str] | None:
    """The real paths of the images a checkpoint's record says it trained or was selected on
    (:func:`trained_images`, resolved against its recorded datalist's folder); None where it records none."""
    images, datalist = config.get("trained_images"), config.get("datalist_file")
    if images is None or not datalist:
        return None
    folder = os.path.realpath(os.path.dirname(str(datalist)))  # as :func:`trained_images` wrote them
    return {os.path.realpath(os.path.join(folder, image)) for image in images}


def warn_of_trained_images(images: Sequence[Mapping[str, Any]], config: Mapping[str, Any], ckpt_path: str | os.PathLike,
                           what: str) -> list[str]:
    """Warn, counting them and naming a few, of the ``images`` that the checkpoint at ``ckpt_path`` trained or was
    selected on (its record's :data:`TRAINED_IMAGES_SETTINGS`): their scores are no held-out test.

    Args:
        images: the items scored (``{"image": path, ...}``).
        config: the checkpoint's recorded settings (``datalist_file``, ``trained_images``).
        ckpt_path: the checkpoint, for the message.
        what: the images scored, for the message (``"the test part of 'fold1.json'"``).

    Returns:
        The paths of the images it trained on, as the items give them (empty without a record).
    """
    trained = recorded_trained_images(config)
    if not trained:
        return []
    seen = [str(item["image"]) for item in images if os.path.realpath(str(item["image"])) in trained]
    if seen:
        logger.warning("%d of %d image(s) of %s are training or validation images of %s (its datalist %s), e.g. %s: "
                       "their scores are not of held-out images", len(seen), len(images), what, ckpt_path,
                       config.get("datalist_file"), ", ".join(Path(p).name for p in seen[:3]))
    return seen


def pretrained_on(config: Mapping[str, Any], images: Sequence[str]) -> list[str]:
    """The ``images`` (paths, as given) that an MAE checkpoint's record says it pretrained on, for training or its
    validation loss: the pictures in its ``dataset_dir`` (a folder: pretraining lists every picture in it, following
    links), or for a ``prepare-corpus`` cache the files of its kept frames (its plan's root; files the cache kept
    out, as evaluation images or of an excluded dataset, were not pretrained on). Compared by real path: a copy of an
    image under another path is not found. Empty for the synthetic default, a record without ``dataset_dir`` or a
    folder no longer here.

    Args:
        config: the MAE checkpoint's recorded settings (``dataset_dir``).
        images: the image paths to look for.
    """
    dataset_dir = config.get("dataset_dir")
    if not dataset_dir or not Path(str(dataset_dir)).is_dir():
        return []
    seen = _pretraining_files(os.path.realpath(str(dataset_dir)))
    return [image for image in images if os.path.realpath(image) in seen]


@functools.lru_cache(maxsize=4)
def _pretraining_files(dataset_dir: str) -> frozenset[str]:
    """The real paths of the files pretraining on ``dataset_dir`` read (:func:`pretrained_on`); listed once per
    process (cross-validate asks at every fold: a cache of a million frames takes seconds)."""
    from monai_ext.data.corpus import is_corpus_cache, kept_sources
    from monai_ext.data.folders import list_images_and_others

    if is_corpus_cache(dataset_dir):
        root = json.loads((Path(dataset_dir) / "plan.json").read_text())["root"]
        # each source file once: a cine loop gives hundreds of kept frames, and a real path per frame (a stat per
        # folder of it) took 8 of 12 s for a cache of a million frames
        return frozenset(os.path.realpath(os.path.join(root, source)) for source in {s for s, _ in kept_sources(dataset_dir)})
    try:
        # as pretraining lists them, links followed: a folder assembled from links to an archive holds the
        # archive's files, which a protocol names by their archive paths
        pictures = list_images_and_others(dataset_dir)[0]
    except ValueError:  # no picture in it
        return frozenset()
    return frozenset(os.path.realpath(path) for path in pictures)


def warn_of_pretraining_images(images: Sequence[Mapping[str, Any]], config: Mapping[str, Any],
                               ckpt_path: str | os.PathLike, what: str) -> list[str]:
    """Warn, counting them and naming a few, of the ``images`` that the MAE checkpoint at ``ckpt_path`` pretrained
    on (:func:`pretrained_on`): the encoder saw them, unlabelled, so their scores are not of unseen images.

    Args:
        images: the items scored (``{"image": path, ...}``).
        config: the checkpoint's recorded settings (``dataset_dir``).
        ckpt_path: the checkpoint, for the message.
        what: the images scored, for the message.

    Returns:
        The paths of the images it pretrained on, as the items give them.
    """
    seen = pretrained_on(config, [str(item["image"]) for item in images])
    if seen:
        logger.warning("%d of %d image(s) of %s were pretrained on by %s (unlabelled, from %s), e.g. %s: their "
                       "scores are not of images the encoder never saw; prepare-corpus --evaluation keeps "
                       "a test set out of pretraining", len(seen), len(images), what, ckpt_path,
                       config.get("dataset_dir"), ", ".join(Path(p).name for p in seen[:3]))
    return seen


def check_evaluated_images(trained: Mapping[str, Any], ckpt_path: str | os.PathLike,
                           datalist_file: str | os.PathLike | None, items: Sequence[Mapping[str, Any]],
                           eval_split: str) -> list[str]:
    """The evaluate overlay's check of a checkpoint's test part against what it trained on: warn where the recorded
    datalist file changed since training (its SHA-256 differs: the parts may have moved), and where the test part
    (of the recorded datalist or another one) holds images the checkpoint trained or was selected on. Other parts
    (``eval_split`` validation or train) are scored knowingly; checkpoints without the record pass silently.

    Args:
        trained: the checkpoint's recorded settings (:func:`trained_settings`).
        ckpt_path: the checkpoint, for the messages.
        datalist_file: the datalist evaluated (the recorded one, or another given).
        items: the test part's items.
        eval_split: the part evaluated.

    Returns:
        The test images it trained on (empty where none, or where nothing is checked).
    """
    path = path_setting(datalist_file, "datalist_file")
    if eval_split != "test" or path is None:
        return []
    recorded, digest = trained.get("datalist_file"), trained.get("datalist_sha256")
    if recorded and digest and os.path.realpath(path) == os.path.realpath(recorded) and sha256_of(path) != digest:
        logger.warning("%s changed since %s was trained on it (its SHA-256 differs): its test part may hold images "
                       "the model trained on", path, ckpt_path)
    return warn_of_trained_images(items, trained, ckpt_path, f"the test part of {path}")


def use_validation_probe(network: torch.nn.Module, ckpt_path: str | os.PathLike, eval_split: str) -> str | None:
    """Score a linear-probe checkpoint's validation part with the probe that training scored it with.

    The saved probe head was refit on training + validation (CLIP's protocol, :mod:`monai_ext.engines.probe`), so
    on the validation part it scores images it was fit on (near 1.0 where training recorded 0.52). The checkpoint
    keeps the head fit on the training part only (``validation_head``); for ``eval_split`` ``validation`` it
    replaces the saved one in ``network``, so the report reproduces the recorded validation metrics. Other splits,
    and checkpoints of another kind, keep the saved head. Called by the evaluate overlay after the weights load.

    Args:
        network: the classifier, the checkpoint's weights loaded.
        ckpt_path: the checkpoint.
        eval_split: the part evaluated.

    Returns:
        A one-line summary of the head used (also logged), or None where the saved head is kept without remark.
    """
    path = path_setting(ckpt_path, "ckpt_path")  # as initialize_weights reads it (``~``, unset values)
    if eval_split != "validation" or path is None:
        return None
    content = read_checkpoint(path)
    arch_args = ((content.get("arch") or {}).get("arch_args") or {}) if isinstance(content, Mapping) else {}
    if not arch_args.get("linear_probe"):
        return None
    model = getattr(network, "module", network)
    if "validation_head" not in content:  # saved before the head was kept
        summary = (f"{ckpt_path}: its probe head was refit on training + validation, and this checkpoint (saved by "
                   "an earlier version) keeps no head fit on training only: the validation figures score images the "
                   "probe was fit on; the ones training recorded are probe_report.json's linear_validation")
        logger.warning(summary)
        return summary
    model.head.load_state_dict(content["validation_head"])
    summary = ("validation scored with the probe head fit on the training part only, as in training (the saved head "
               "was refit on training + validation)")
    logger.info(summary)
    return summary


def init_architecture(checkpoint: str | os.PathLike | None) -> dict[str, Any]:
    """The network settings a fine-tuning run takes from its ``--init_checkpoint``, where the file records them.

    A pretraining, classification or segmentation ``model.pt`` of this project records its ``arch``,
    ``image_size`` and ``in_channels``; the train configs default to these, so the README's hand-off
    (``--init_checkpoint bundles/usf_mae_pretrain/models/model.pt``) fine-tunes a ViT-Tiny 128-px gray pretraining
    as what it is. Before, the ViT-B 224-px 3-channel defaults applied: a tiny encoder was refused for its head
    count, and a 64-px gray one silently had its position grid stretched and its patch embedding widened. Settings
    given on the command line still win (they replace these expressions).

    Returns:
        The recorded ones of ``arch``, ``image_size``, ``in_channels``; ``{}`` for no checkpoint, a released or
        foreign file (no record), or one that does not read (:func:`initialize_weights` then names the problem).
    """
    path = path_setting(checkpoint, "init_checkpoint")
    if path is None or not Path(path).expanduser().is_file():
        return {}
    try:  # the record as evaluate and inference read theirs
        trained = trained_settings(Path(path).expanduser(), "usf_mae_classify", kinds=("mae", "classifier", "segmenter"))
    except CheckpointError:  # unreadable, or a kind no fine-tuning starts from: initialize_weights names it
        return {}
    found = {key: trained[key] for key in ("arch", "image_size", "in_channels") if key in trained}
    if found:
        logger.info("network settings from --init_checkpoint's record: %s (settings given on the command line win)",
                    ", ".join(f"{key}={value!r}" for key, value in found.items()))
    return found


def trained_settings(path: str | os.PathLike, bundle: str, default_path: str | os.PathLike | None = None,
                     kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """Bundle settings fixed by a trained bundle checkpoint's architecture record, or ``{}`` before training.

    Standalone inference configs read their network settings from here, so they need no training config, run
    before any checkpoint exists (``verify_net_in_out``, ``ckpt_export``) and follow the checkpoint once it does; the
    evaluate overlays read them so that a model.pt evaluates without restating its architecture.

    Args:
        path: the checkpoint (``ckpt_path``).
        bundle: the bundle reading it; its checkpoint kinds (:data:`BUNDLE_KINDS`) are the accepted ones.
        default_path: the bundle's default file, the only one allowed not to exist (:func:`checkpoint_file`).
        kinds: accepted kinds instead of the bundle's own (evaluate also takes ``external`` networks).

    Returns:
        The recorded ones of: arch, image_size, class_names, mask_encoding (segmenters), in_channels, global_pool,
        linear_probe (classifiers), norm_pix_loss (MAEs), feature_size, feature_blocks (segmenters), and the
        data and scoring settings (:data:`PRETRAIN_DATA_SETTINGS`, :data:`PRETRAIN_SCORING_SETTINGS`,
        :data:`FINETUNE_DATA_SETTINGS`).

    Raises:
        FileNotFoundError, ValueError: as :func:`checkpoint_file`.
        CheckpointError: a checkpoint of another kind (:func:`check_kind`), one whose network has another number of
            classes than it names (:func:`~monai_ext.networks.checkpoints.check_class_count`), or an unreadable file.
    """
    found_file = checkpoint_file(path, default_path)
    if found_file is None:
        logger.info("no checkpoint at %s yet: the config's defaults apply", path)
        return {}
    content = read_checkpoint(found_file)
    check_kind(content, path, bundle, kinds)
    record = (content.get("arch") if isinstance(content, Mapping) else None) or {}
    check_class_count(record, str(path))
    config, arch_args = record.get("config") or {}, record.get("arch_args") or {}
    found = {
        "arch": recorded_arch(record),
        "image_size": config.get("image_size", arch_args.get("img_size")),  # files saved outside a bundle run
        "class_names": config.get("class_names"),
        "mask_encoding": config.get("mask_encoding"),
        "in_channels": arch_args.get("in_chans"),
        "global_pool": arch_args.get("global_pool"),
        "linear_probe": arch_args.get("linear_probe"),
        "norm_pix_loss": arch_args.get("norm_pix_loss"),
        "feature_size": arch_args.get("feature_size"),
        "feature_blocks": arch_args.get("feature_blocks"),
        **{key: config.get(key) for key in (*PRETRAIN_DATA_SETTINGS, *PRETRAIN_SCORING_SETTINGS)},
    }
    # a recorded None is a setting ("no cap", "no datalist"), not a missing record: kept, or the default replaced it
    recorded = {key: config[key] for key in (*FINETUNE_DATA_SETTINGS, *TRAINED_IMAGES_SETTINGS) if key in config}
    return {**{key: value for key, value in found.items() if value is not None}, **recorded}


def recorded_arch(record: Mapping[str, Any]) -> str | None:
    """The registered architecture a checkpoint's ``arch`` record names: its config's ``arch``, else the MAE whose
    structure its ``arch_args`` have (``patch_size``, ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``; an MAE's
    decoder too).

    The bundles rebuild their network by this name: a classifier saved through ``save_model_checkpoint`` without a
    config records ``arch_args`` only, and evaluate and inference rebuilt it as the default ViT-B. Fine-tuned networks
    are named by the MAE whose encoder they have, as the bundles' own records do (``build_classifier`` and
    ``build_segmenter`` take that name).

    Args:
        record: the checkpoint's ``arch`` record (``kind``, ``arch_args``, ``config``).

    Returns:
        The name, or None where the record names none and its structure is no registered architecture's (the strict
        load then refuses the bundle's default network, naming what the file was trained with).
    """
    from monai_ext.networks.classifier import ENCODER_OF_MAE
    from monai_ext.networks.mae import MAE_SPECS
    from monai_ext.networks.segmentation import ENCODER_SPECS

    config, arch_args = record.get("config") or {}, record.get("arch_args") or {}
    if config.get("arch") is not None:
        return config["arch"]
    if record.get("kind") == "mae":
        specs = MAE_SPECS
    elif record.get("kind") in ("classifier", "segmenter"):
        # the fine-tuned network's factories set the encoder's structure, with the MAE's (and timm's) MLP ratio
        specs = {mae: {**ENCODER_SPECS[encoder], "mlp_ratio": 4.0} for mae, encoder in ENCODER_OF_MAE.items()}
    else:  # external networks are rebuilt from their config, not by a registered name
        return None
    return next((name for name, spec in specs.items()
                 if all(key in arch_args and arch_args[key] == value for key, value in spec.items())), None)


def as_trained(network: torch.nn.Module, given: Mapping[str, Any], trained: Mapping[str, Any],
               path: str | os.PathLike) -> torch.nn.Module:
    """``network`` (rebuilt from the checkpoint at ``path``), once the settings ``given`` to the preprocessing are
    the ones it was trained with.

    A standalone inference config rebuilds the network from the checkpoint's record, so an ``--image_size`` or
    ``--in_channels`` given on the command line reaches the preprocessing only, and failed inside the network with
    a message about tensor sizes; ``--class_names`` in another order relabelled every prediction without a word.

    Raises:
        ValueError: naming each setting given, the value the checkpoint records, and what to do.
    """
    differ = [f"--{key} {value!r} (trained with {trained[key]!r})" for key, value in given.items()
              if key in trained and not _same_setting(value, trained[key])]
    if differ:
        raise ValueError(f"{path}: {'; '.join(differ)}: the network is rebuilt from the checkpoint, so leave these "
                         "to it")
    return network


def _same_setting(given: Any, recorded: Any) -> bool:
    """Whether a setting given on the command line is the recorded one; lists (class names) compare as text, since
    names recorded as numbers (BI-RADS ``[2, 3, 4]``) come back from the command line as text."""
    if isinstance(given, Sequence) and not isinstance(given, str) and isinstance(recorded, Sequence) \
            and not isinstance(recorded, str):
        return [str(v) for v in given] == [str(v) for v in recorded]
    return given == recorded


def recorded_class_names(trained: Mapping[str, Any], path: str | os.PathLike,
                         default_path: str | os.PathLike | None = None,
                         defaults: Sequence[str] | None = None,
                         example: Sequence[str] = ("benign", "malignant")) -> list[str]:
    """The class names the checkpoint at ``path`` records, for an inference config given no ``--class_names``.

    A checkpoint saved without a training config (``save_model_checkpoint(path, model, "classifier")``) records no
    names; inventing the bundle's defaults for it relabelled every prediction of, say, a normal/abnormal model as
    benign/malignant without a word. So it is refused, as the evaluate config (the datalist's names) and the segment
    bundle (the record's) never guess them either; ``--class_names`` given on the command line replaces this setting.

    Args:
        trained: :func:`trained_settings` of the checkpoint.
        path: the checkpoint (``ckpt_path``).
        default_path: the bundle's default file, the only one allowed not to exist (:func:`checkpoint_file`).
        defaults: names for a run without any checkpoint (random weights, a smoke test); None: a checkpoint is
            needed.
        example: names the message shows (a segmenter's begin with its background class).

    Raises:
        ValueError: a checkpoint that records no class names, naming ``--class_names``.
    """
    recorded = trained.get("class_names")
    if recorded is not None:
        return [str(name) for name in recorded]
    if defaults is not None and checkpoint_file(path, default_path) is None:
        return [str(name) for name in defaults]  # no checkpoint yet: random weights, whose labels mean nothing
    names = repr([str(name) for name in example])
    raise ValueError(f"{path} records no class names (saved without a training config): give them in the order the "
                     f"model was trained for, e.g. --class_names \"{names}\" (MONAI Label: --conf overrides "
                     f"'{{\"class_names\": {json.dumps(list(map(str, example)))}}}')")


def class_names_trained_for(datalist_names: Sequence[str], trained: Mapping[str, Any],
                            path: str | os.PathLike) -> list[str]:
    """The datalist's class names, once they are the ones the checkpoint at ``path`` was trained for.

    A label is an index into ``class_names``: scored against a datalist that names the classes in another order,
    a benign/malignant model has its metrics inverted without any error, and with another number of classes the
    head's shape fails to load with a message about tensors. Checkpoints without a record (external networks)
    are not checked.

    Args:
        datalist_names: the evaluated datalist's ``class_names``.
        trained: :func:`trained_settings` of the checkpoint.
        path: the checkpoint, for the message.

    Raises:
        ValueError: the recorded names differ from the datalist's, in names, number or order.
    """
    names = [str(name) for name in datalist_names]
    recorded = trained.get("class_names")
    if recorded is not None and [str(name) for name in recorded] != names:
        raise ValueError(
            f"{path} was trained for classes {list(recorded)!r} but the datalist has {names!r}: labels are indices "
            "into these lists, so they must name the same classes in the same order (write the datalist's "
            "class_names and labels in the checkpoint's order, or pass the --ckpt_path trained for these classes)"
        )
    return names


#: Bundle settings that must be whole numbers of at least this much; a bad one would otherwise fail inside ignite
#: or the loader with a traceback (once per fold under cross-validate).
COUNT_SETTINGS = {"epochs": 1, "batch_size": 1, "num_workers": 0, "seed": 0, "data_seed": 0}


#: Masks read per datalist part by :func:`check_mask_encoding` for ``index`` while looking for one that holds a lesion
#: (the first such decides; lesion-free masks say nothing): a part of mostly normal images may start with many.
MASK_ENCODING_PROBES = 50


def check_mask_encoding(split: Mapping[str, Any], mask_encoding: str, num_classes: int | None = None) -> None:
    """Refuse binary masks for a datalist of several foreground classes whose items do not say their class, and
    ``index`` for binary (0/255) masks.

    ``binary`` reads every set pixel as class 1 (or the item's ``foreground``): class-index masks of three or more
    classes would train as one lesion class, and nothing would say so (the report only shows the other classes
    without a Dice). ``index`` refuses every 0/255 mask as it is loaded: each part's masks with a lesion were left
    out with a warning each, and training stopped on the few lesion-free ones left, saying that none held a lesion.

    Args:
        split: the datalist (``class_names``, parts of items with ``label`` mask files).
        mask_encoding: the bundle's ``mask_encoding``.
        num_classes: the bundle's ``num_classes``, the classes the masks are read into (:func:`check_num_classes`).

    Raises:
        ValueError: a ``num_classes`` other than the number of class names; naming the classes and an item without
            ``foreground``; or, for ``index``, the first mask with a lesion of each part (of the first
            :data:`MASK_ENCODING_PROBES` masks read) that holds 0 and one value that is no class index.
    """
    names = list(split.get("class_names", []))
    if num_classes is not None:
        check_num_classes(num_classes, names)
    if mask_encoding == "index":
        _refuse_binary_masks_read_as_indices(split, len(names))
        return
    if mask_encoding != "binary" or len(names) <= 2:
        return
    bare = [it for part in ("train", "validation", "test") for it in split.get(part, []) if "foreground" not in it]
    if bare:
        raise ValueError(f"the datalist has {len(names) - 1} foreground classes {names[1:]!r}, but --mask_encoding "
                         f"binary reads every mask as one class and {len(bare)} item(s) do not give their "
                         f"'foreground' class, e.g. {bare[0]['image']!r}: give --mask_encoding index for "
                         "class-index masks (0 background, 1, 2, ...), or each item's 'foreground'")


def _refuse_binary_masks_read_as_indices(split: Mapping[str, Any], num_classes: int) -> None:
    """Raise ValueError where the first mask with a lesion in a part (of the first :data:`MASK_ENCODING_PROBES`
    read) holds 0 and one value of ``num_classes`` or more (0/255); unreadable masks are left to the loader, which
    names each. Every mask of an item with several counts: a binary one second was refused item by item."""
    from monai_ext.io.errors import UnreadableImageError
    from monai_ext.transforms.masks import stored_mask_values

    for part in ("train", "validation", "test"):
        labels = [item["label"] for item in split.get(part, []) if item.get("label")]
        paths = [path for label in labels for path in ([label] if isinstance(label, (str, os.PathLike)) else label)]
        for path in paths[:MASK_ENCODING_PROBES]:
            try:
                values = stored_mask_values(path).tolist()
            except (UnreadableImageError, OSError):
                continue
            if len(values) == 2 and values[0] == 0 and values[1] >= num_classes:
                raise ValueError(f"--mask_encoding index reads mask values as class indices below {num_classes}, "
                                 f"but {str(path)!r} holds 0 and {values[1]} only: a binary mask; give "
                                 "--mask_encoding binary")
            if len(values) > 1:  # a mask with a lesion read right: this part's masks are class indices
                break


def check_num_classes(num_classes: Any, class_names: Sequence[Any]) -> None:
    """Refuse a ``--num_classes`` other than the number of the datalist's ``class_names``.

    The network's outputs are the mask classes the datalist names: a run with ``--num_classes 3`` on a two-class
    datalist trained a whole epoch, saved a model.pt with an unnamed class, and only then stopped on the shape of
    the validation Dice.

    Raises:
        ValueError: quoting both.
    """
    if num_classes != len(class_names):
        raise ValueError(f"--num_classes {num_classes!r} differs from the {len(class_names)} class_names of the "
                         f"datalist, {list(class_names)!r}: the network predicts the datalist's classes, so leave "
                         "--num_classes out")


def check_counts(settings: Mapping[str, Any]) -> None:
    """Refuse ``--epochs 0``, ``--batch_size -1``, ``--seed 1.5`` and the like, from the runners' overrides before
    any fold, and from a bundle run's resolved settings in its ``initialize`` before any data is read (config
    expressions, ``$...`` or ``@...``, are left to the bundle).

    Raises:
        ValueError: quoting the setting and its value.
    """
    for key, lowest in COUNT_SETTINGS.items():
        value = settings.get(key)
        if value is None or (isinstance(value, str) and value.startswith(("$", "@"))):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise ValueError(f"--{key} must be a whole number of at least {lowest}, got {value!r}")


def require_best_model(path: str | os.PathLike, best_model: Any) -> None:
    """Stop with what to do when training ended without a best model at ``path``.

    A validation metric that no image defines (Dice when no validation mask has the class) is NaN at every epoch,
    so no epoch is the best and nothing is written; evaluate, inference and the MONAI Label app would then fail
    later on a missing file.

    Args:
        path: the best-model file (``<ckpt_dir>/model.pt``).
        best_model: the run's :class:`~monai_ext.handlers.checkpointing.BestModelSaver`.

    Raises:
        ValueError: no validation ran, or none gave a finite value of the saver's metric: ``path`` is not this
            run's best model (an earlier run's file there is not replaced); on rank 0 (or in one process), also a
            resumed run's best model file that is gone.
    """
    from monai_ext.engines.distributed import is_main_process

    if best_model.best is not None:
        # rank 0 alone writes the file: another node's rank may not see it (a ckpt_dir that is not shared)
        if is_main_process() and not Path(path).is_file():  # a resumed run's best so far, whose file was removed
            raise ValueError(f"the run resumed with a best {best_model.metric_name} of {best_model.best:.6g} from its "
                             f"checkpoint, but {path} (that best model) is gone and no later epoch beat it; "
                             "restore the file, or train again without --resume")
        return
    evaluator = best_model.evaluator
    if evaluator is None or not evaluator.state.iteration:
        raise ValueError(f"no validation ran during training, so no best model was chosen and {path} was not "
                         "written; set val_interval to at most the number of epochs")
    raise ValueError(
        f"no validation epoch had a defined {best_model.metric_name} (Dice and IoU need the class in a validation "
        f"mask: are all of them empty?), so no best model was chosen and {path} was not written; put images that "
        "show the class in the validation part"
    )


def load_inference_weights(network: torch.nn.Module, path: str | os.PathLike, bundle: str,
                           default_path: str | os.PathLike | None = None) -> str:
    """Load a trained bundle checkpoint into ``network``, or keep random weights, loudly, before training.

    Random weights only where ``path`` is the bundle's default file (``default_path``) and it does not exist yet;
    any other missing path is an error (:func:`checkpoint_file`).

    Returns:
        What the outputs were made with: the checkpoint's absolute path, or ``"random"``.
    """
    found_file = checkpoint_file(path, default_path)
    if found_file is None:
        logger.warning("no checkpoint at %s: RANDOM WEIGHTS (train the bundle first, or pass --ckpt_path)", path)
        return "random"
    content = read_checkpoint(found_file)
    check_kind(content, path, bundle)
    summary = _load_content(network, content, str(path), encoder_only=False)
    logger.info("weights: %s", summary)
    # LoadReport.summary() ends with "adapted=[...]": a grid resized for inference means bare weights (no record
    # of their image size) meet this run's --image_size, which may not be the size they were trained at
    if "pos_embed" in summary.rpartition("adapted=")[2]:
        recorded = _trained_with(content) if isinstance(content, Mapping) else ""
        if "image_size=" in recorded:  # it said "records no image size" of a file that records one
            logger.warning("%s was trained with %s; its position embeddings were interpolated to this run's image "
                           "size (--image_size given): predictions at another size are off", path, recorded)
        else:
            logger.warning("%s records no image size and its position embeddings were resized to this run's: if it "
                           "was trained at another size, give that --image_size (predictions at another size are off)",
                           path)
    return str(found_file.resolve())


def require_trained_weights(weights: str, allow_random: bool, bundle: str) -> None:
    """Refuse to predict with random weights unless asked to (``--allow_random_weights true``, a smoke test).

    Without a trained model the classifier's predictions look like any others (a class and its probabilities per
    file), and the run ended well with one warning line: a user who forgot ``--ckpt_path`` labelled an archive
    with noise.

    Args:
        weights: what :func:`load_inference_weights` returned (a path, or ``"random"``).
        allow_random: the bundle's ``allow_random_weights`` setting, read by :func:`as_flag`.
        bundle: the bundle's name, for the message.

    Raises:
        ValueError: random weights not allowed.
    """
    if weights == "random" and not allow_random:
        raise ValueError(f"{bundle} has no trained model to predict with (no models/model.pt in the bundle yet, and "
                         "no --ckpt_path): its predictions would be random; give --ckpt_path, train the bundle "
                         "first, or give --allow_random_weights true for a smoke test")


# ---------------------------------------------------------------------------------------------------- inputs
def inference_files(input_dir: str | os.PathLike | None, input_files: str | os.PathLike | Sequence[str] | None,
                    output_dir: str | os.PathLike | None = None, pictures_only: bool = False) -> list[str]:
    """Files to predict: every file under ``input_dir`` that the decoder reads as one image (pictures, DICOM, NIfTI,
    NRRD / MHA / MHD) plus ``input_files``, each once.

    The other files under ``input_dir`` are counted by suffix in a warning (a cine loop, a ``.jfif``, notes), so a
    batch that predicts fewer files than the folder holds says why. Lesion masks saved beside their images there
    (BUSI's ``benign (1)_mask.png`` and ``_mask_1.png`` next to ``benign (1).png``) are ground truth, not scans, and
    are left out with a warning (:func:`~monai_ext.data.folders.without_masks`). A file given twice (in
    ``input_dir`` and in ``input_files``, or twice in the list) is predicted once, with a warning.

    Args:
        input_dir: a folder, searched recursively; whatever lies under ``output_dir`` is left out, so that an output
            folder inside it does not feed a run's own masks and heat maps into the next run.
        input_files: a list of paths, or one path (``--input_files scan.png``: a string is one file, not letters).
        output_dir: the run's output folder.
        pictures_only: only pictures (PNG, JPG, BMP, TIFF, GIF, WebP), for a bundle that reads what it trained on
            (the pretraining bundle reads folders of pictures); a DICOM, volume or cine file is then counted among
            the files not read, and one named in ``input_files`` is refused.

    Raises:
        ValueError: neither gives any file, a folder is named in ``input_files``, or (``pictures_only``) a named file
            is no picture.
    """
    from monai_ext.data.corpus import is_corpus_cache
    from monai_ext.data.folders import without_masks
    from monai_ext.io.images import IMAGE_SUFFIXES, SINGLE_IMAGE_SUFFIXES

    input_dir, output_dir = path_setting(input_dir, "input_dir"), path_setting(output_dir, "output_dir")
    if is_corpus_cache(input_dir):  # its only picture is report.png: a run would "predict" the report's chart
        score = (", or score the cache with the evaluate overlay (--dataset_dir CACHE --eval_split all)"
                 if pictures_only else "")  # the pretraining bundle's; the others do not read caches
        raise ValueError(f"--input_dir {input_dir!r} is a prepare-corpus cache, whose frames are not files to "
                         f"predict; give the folder of the source files{score}")
    suffixes = IMAGE_SUFFIXES if pictures_only else SINGLE_IMAGE_SUFFIXES
    found, others, listed = _folder_inputs(input_dir, suffixes, output_dir)
    # a dataset folder (BUS-BRA's Masks/, a class folder's masks/ or annotations/): its masks are ground truth, not
    # scans; the rule make-datalist folder leaves them out by
    in_masks = _in_mask_folders(found, input_dir)
    left_out = set(in_masks)
    found = [p for p in found if p not in left_out]
    # a BUSI-style folder: its masks would be segmented and classified as scans, and their results mixed with the
    # images'; a mask named in input_files is the user's choice and is kept
    found = [str(p) for p in without_masks([Path(p) for p in found], input_dir, "scans to predict",
                                           "`make-datalist busi` reads them as masks; name one in --input_files "
                                           "to predict on it")]
    named = path_list_setting(input_files, "input_files")
    folders = [f for f in named if os.path.isdir(f)]
    if folders:  # it was "cannot open (missing, a broken link or not a file)", which did not say where folders go
        raise ValueError(f"--input_files {folders[0]!r} is a folder: give folders as --input_dir (searched "
                         "recursively), files as --input_files")
    if pictures_only:
        _refuse_non_pictures(named)
    files = found + named
    if not files and listed:
        raise ValueError(f"all {listed} images under --input_dir {input_dir!r} lie inside --output_dir "
                         f"{output_dir!r}, whose files are never read back; choose an --output_dir outside it")
    if not files:
        raise ValueError("give --input_dir or --input_files")
    _warn_not_read(input_dir, found, others, pictures_only, in_masks)
    return _each_once(files)


def _in_mask_folders(files: Sequence[str], input_dir: str | None) -> list[str]:
    """The ``files`` that lie in a mask folder below ``input_dir`` (``Masks/``, ``masks/``, ``annotations/``,
    ``ground_truth/``: :func:`~monai_ext.data.downstream.is_mask_folder`, as ``make-datalist folder`` reads them)."""
    from monai_ext.data.downstream import is_mask_folder

    if input_dir is None:
        return []
    return [f for f in files if any(is_mask_folder(part) for part in Path(os.path.relpath(f, input_dir)).parts[:-1])]


def _refuse_non_pictures(files: Sequence[str]) -> None:
    """Raise ValueError naming the first of ``files`` that is no picture, with where such files are read."""
    from monai_ext.io.images import IMAGE_SUFFIXES, matches_suffixes

    for file in files:
        if not matches_suffixes(Path(file), IMAGE_SUFFIXES):
            raise ValueError(f"--input_files {file!r}: this bundle reads pictures ({', '.join(IMAGE_SUFFIXES)}); "
                             "frames of DICOM files, cine loops and volumes go through `python -m monai_ext "
                             "prepare-corpus`")


def _folder_inputs(input_dir: str | None, suffixes: Sequence[str],
                   output_dir: str | None) -> tuple[list[str], list[Path], int]:
    """(the images under ``input_dir`` outside ``output_dir``, the other files there, the images under
    ``input_dir`` in all); ([], [], 0) without a folder."""
    from monai_ext.data.folders import list_images_and_others, outside_folders

    if input_dir is None:
        return [], [], 0
    if not Path(input_dir).is_dir():  # the folder lister's message says "dataset folder", not the setting
        raise ValueError(f"--input_dir {str(input_dir)!r} does not exist or is not a folder")
    images, others = list_images_and_others(input_dir, suffixes)
    listed = len(images)
    images, others = outside_folders(images, [output_dir]), outside_folders(others, [output_dir])
    earlier = _earlier_output_folders(others)
    kept = outside_folders(images, earlier)
    if len(kept) < len(images):
        logger.warning("%d image(s) under %s are outputs of an earlier run (%s) and are not predicted",
                       len(images) - len(kept), input_dir, ", ".join(sorted({str(f.parent) for f in earlier})[:3]))
    return [str(p) for p in kept], outside_folders(others, earlier), listed


#: The results file an inference run writes, and the folders of images it writes beside it.
_RESULTS_FILES = {"predictions.json": ("predictions", ("heatmaps",)), "masks.json": ("masks", ("masks", "overlays"))}


def _earlier_output_folders(files: Sequence[Path]) -> list[Path]:
    """The image folders of earlier inference runs found among ``files``: the ``heatmaps/`` beside a
    ``predictions.json``, the ``masks/`` and ``overlays/`` beside a ``masks.json``, where the JSON is one these
    bundles wrote. Dated output folders inside a study folder are a common habit; their masks and heat maps must
    not be segmented or classified as scans by the next run."""
    folders = []
    for path in files:
        if path.name not in _RESULTS_FILES:
            continue
        key, subfolders = _RESULTS_FILES[path.name]
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(content, dict) and "class_names" in content and isinstance(content.get(key), dict):
            folders += [path.parent / name for name in subfolders]
    return folders


def _warn_not_read(input_dir: str | None, images: Sequence[str], others: Sequence[Path],
                   pictures_only: bool = False, masks: Sequence[str] = ()) -> None:
    """Warn, counting them, of the files under ``input_dir`` left out: ``others`` (not images by their suffix or
    content) and ``masks`` (images in mask folders, :func:`_in_mask_folders`), so that a batch that predicts fewer
    files than the folder holds says why."""
    from monai_ext.data.folders import suffix_counts
    from monai_ext.io.images import VIDEO_SUFFIXES
    from monai_ext.io.volumes import without_metaimage_data_files

    others = without_metaimage_data_files(list(others), images)
    if not others and not masks:
        return
    counts = suffix_counts(others)
    videos = [p for p in others if p.name.lower().endswith(VIDEO_SUFFIXES)]
    if pictures_only:
        hint = "; this bundle reads pictures: DICOM files, cine loops and volumes go through prepare-corpus"
    else:
        hint = "; cine loops are predicted from their first frame when named in --input_files" if videos else ""
    if not masks:
        logger.warning("--input_dir %s: %d file(s) not read, not images by their suffix or content (%s)%s",
                       input_dir, len(others), counts, hint)
        return
    folders = sorted({Path(os.path.relpath(m, input_dir)).parent.as_posix() for m in masks})
    shown = ", ".join(folders[:3]) + (" ..." if len(folders) > 3 else "")
    rest = f"; {len(others)} not images by their suffix or content ({counts}){hint}" if others else ""
    logger.warning("--input_dir %s: %d file(s) not read: %d in mask folders (%s), masks rather than scans (name one "
                   "in --input_files to predict on it)%s", input_dir, len(others) + len(masks), len(masks), shown,
                   rest)


def _each_once(files: Sequence[str]) -> list[str]:
    """``files`` in order with repeats of one file (by resolved path) dropped, with a warning."""
    kept, seen = [], set()
    for file in files:
        key = os.path.realpath(os.path.expanduser(file))
        if key not in seen:
            seen.add(key)
            kept.append(file)
    if len(kept) < len(files):
        logger.warning("%d input file(s) were given more than once (in --input_dir and --input_files, or twice); "
                       "each is predicted once", len(files) - len(kept))
    return kept
