"""Checkpoint description and conversion: a file of any MAE layout the checkpoint filters read (the released USF-MAE,
Facebook's MAE, MONAI's ViT, wrapped state dicts, this project's own) loaded strictly into the MAE it records and saved
as this project's self-describing file (:func:`~monai_ext.networks.checkpoints.save_model_checkpoint`).

The settings of the MAE to build come from what the file records (a project file: its whole architecture record; a
Facebook file: its training ``args``; a foreign file's weights: its channels and image size), else from the released
USF-MAE's, and a caller's settings win; the summary says where each came from.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path

from monai_ext.io.checkpoints import CheckpointError
from monai_ext.networks.checkpoints import (
    FORMAT_NAME,
    LoadReport,
    build_from_checkpoint,
    checkpoint_mapping,
    detect_layout,
    load_mae_weights,
    read_checkpoint,
    save_model_checkpoint,
    to_state_dict,
)
from monai_ext.networks.mae import MAE_FACTORIES, MaskedAutoencoderViT, build_mae

#: The MAE convert-checkpoint builds for a file that records none: the released USF-MAE's and Facebook's.
CONVERT_DEFAULTS: dict[str, object] = {"arch": "mae_vit_base_patch16_dec512d8b", "img_size": 224, "in_chans": 3,
                                       "norm_pix_loss": False}

#: Settings a project file keeps when ``arch`` names another network: the factories set the structure only.
ARCH_INDEPENDENT_SETTINGS = ("img_size", "in_chans", "norm_pix_loss", "norm_eps")

#: Facebook's ``models_mae`` names (what its ``args.model`` holds) for the registered architectures they alias.
FACEBOOK_MAE_NAMES = {"mae_vit_base_patch16": "mae_vit_base_patch16_dec512d8b",
                      "mae_vit_large_patch16": "mae_vit_large_patch16_dec512d8b"}


def describe_checkpoint(path: str, sha256: str | None = None) -> dict[str, object]:
    """Read a checkpoint safely and describe it.

    Args:
        path: the checkpoint file.
        sha256: its expected SHA-256, checked before it is read.

    Returns:
        ``path``, ``layout`` (the filter that reads it), ``tensors``, ``parameters``, ``groups`` (the first parts of
        its keys, sorted) and ``arch`` (the architecture record a file of this project holds, a training
        checkpoint's too, else None).

    Raises:
        CheckpointError: an unreadable file or an unknown layout, naming the file.
    """
    checkpoint = read_checkpoint(path, sha256)
    try:
        layout, state_dict = to_state_dict(checkpoint)
    except CheckpointError as e:  # the layout's refusal names no file
        raise CheckpointError(f"{path}: {e}") from e
    return {
        "path": path,
        "layout": layout,
        "tensors": len(state_dict),
        "parameters": int(sum(v.numel() for v in state_dict.values())),
        "groups": sorted({key.split(".")[0] for key in state_dict}),
        "arch": _project_record(checkpoint),
    }


def _project_record(checkpoint: object) -> Mapping[str, object] | None:
    """The architecture record a file of this project holds (a model file's, or a training checkpoint's beside its
    optimiser state, which was described as recording none), else None."""
    record = checkpoint.get("arch") if isinstance(checkpoint, Mapping) else None
    return record if isinstance(record, Mapping) and record.get("format") == FORMAT_NAME else None


def convert_mae_checkpoint(src: str, dst: str, *, arch: str | None = None, img_size: int | None = None,
                           in_chans: int | None = None, norm_pix_loss: bool | None = None,
                           sha256: str | None = None) -> str:
    """Build the MAE that ``src`` (any layout the checkpoint filters read) records, load its weights strictly, and
    save it at ``dst`` as this project's self-describing file.

    Args:
        src: the checkpoint to convert.
        dst: the file to write (not ``src`` itself).
        arch, img_size, in_chans, norm_pix_loss: settings of the MAE to build; each one None is taken from what
            ``src`` records (a file of this project: its whole architecture record, ``norm_eps`` included; a Facebook
            file: ``model``, ``input_size`` and ``norm_pix_loss`` of its training ``args``; then a foreign file's
            weights: ``in_chans`` and ``img_size`` of its patch kernel and position grid), else from
            :data:`CONVERT_DEFAULTS` (the released USF-MAE's and Facebook's).
        sha256: the expected SHA-256 of ``src``, checked before it is read.

    Returns:
        One line: the load report's summary and each setting with where it came from.

    Raises:
        ValueError: ``dst`` is ``src`` itself, ``src`` is a checkpoint of another kind, or it records a setting this
            project cannot build (each quoting the value).
        CheckpointError: ``src`` unreadable, of an unknown layout, or not matching the MAE to build.
    """
    if Path(dst).exists() and Path(src).exists() and Path(dst).samefile(src):
        # the converted file is another layout (and image size): the source, a released checkpoint whose published
        # SHA-256 identifies it, would be gone
        raise ValueError(f"out {dst!r} is the source checkpoint itself; give another file to write")
    content = checkpoint_mapping(read_checkpoint(src, sha256), src)  # a str inside is no path to load instead
    config, _ = _mae_record(content, src)
    content = _as_project_file(content, src)
    given = {key: value for key, value in (("arch", arch), ("img_size", img_size), ("in_chans", in_chans),
                                           ("norm_pix_loss", norm_pix_loss)) if value is not None}
    convert = _convert_recorded if _is_project_file(content) else _convert_foreign
    model, report, settings = convert(content, src, given)
    # a file of this project keeps its training record (data, split, scoring): evaluate follows it
    record = {**config, "converted_from": str(Path(src).name)}
    if settings["arch"][0] is not None:  # a project file whose config names no arch gets none, not the default's
        record["arch"] = settings["arch"][0]
    record.update({key: model.arch_args[arg] for key, arg in (("image_size", "img_size"), ("in_channels", "in_chans"))
                   if key in config})
    save_model_checkpoint(dst, model, "mae", record)
    told = ", ".join(f"{key}={value!r} ({origin})" for key, (value, origin) in settings.items())
    return f"{src} -> {dst}: {report.summary()}; settings: {told}"


#: A converted setting: (value, where it came from).
Setting = tuple[object, str]


def _as_project_file(content: Mapping[str, object], src: str) -> Mapping[str, object]:
    """A training checkpoint of this project (a pretraining run's ``checkpoint_iteration=N.pt``: the weights under
    ``network`` beside the optimiser's state and the run's architecture record) as the project file it holds,
    ``{"model": weights, "arch": record}``; any other content as it is.

    Its layout is a wrapped state dict, so it was converted as a foreign file: a 64-px ``norm_pix_loss`` run became
    the default 224-px raw-pixel MAE (position embeddings resized) without a word, its record ignored.

    Raises:
        CheckpointError: the nested weights of an unknown layout, naming ``src``.
    """
    record = _project_record(content)
    if record is None or "model" in content:
        return content
    try:
        layout, state_dict = to_state_dict(content)
    except CheckpointError as e:  # the layout's refusal names no file
        raise CheckpointError(f"{src}: {e}") from e
    return {"model": state_dict, "arch": record} if layout.startswith("wrapped(") else content


def _is_project_file(content: object) -> bool:
    """Whether ``content`` is a file of this project (its own layout, with the architecture record)."""

    try:
        return detect_layout(content) == "monai_ext"
    except CheckpointError:  # an unknown layout: the load refuses it, naming the file
        return False


def _convert_recorded(content: Mapping[str, object], src: str,
                      given: Mapping[str, object]) -> tuple[MaskedAutoencoderViT, LoadReport, dict[str, Setting]]:
    """A project file rebuilt from its whole architecture record (:func:`build_from_checkpoint`: ``norm_eps`` and
    every other argument kept, where naming an arch and three settings lost the rest), the settings in ``given``
    winning. Returns (model, load report, settings with their origins)."""

    recorded = build_from_checkpoint(content, src)  # the record's network, its weights loaded strictly
    model = _with_settings(recorded.arch_args, given)
    report = load_mae_weights(model, content, name=src) if model is not None else LoadReport(layout="monai_ext")
    model = model if model is not None else recorded
    origin = {key: "given" if key in given else "the file's record" for key in CONVERT_DEFAULTS}
    arch = given.get("arch", (content["arch"].get("config") or {}).get("arch"))
    settings: dict[str, Setting] = {"arch": (arch, origin["arch"])}
    settings.update({key: (model.arch_args[key], origin[key]) for key in ("img_size", "in_chans", "norm_pix_loss")})
    return model, report, settings


def _with_settings(recorded: Mapping[str, object], given: Mapping[str, object]) -> MaskedAutoencoderViT | None:
    """The MAE of a project file's ``recorded`` arguments with ``given`` ones instead, or None where that is the
    recorded network itself. An --arch gives its structure, and the file's settings that no factory sets
    (:data:`ARCH_INDEPENDENT_SETTINGS`) are kept unless given too."""

    overrides = {key: value for key, value in given.items() if key != "arch"}
    if "arch" in given:
        kept = {key: recorded[key] for key in ARCH_INDEPENDENT_SETTINGS if key in recorded}
        return build_mae(given["arch"], **{**kept, **overrides})
    wanted = {**recorded, **overrides}
    return MaskedAutoencoderViT(**wanted) if wanted != dict(recorded) else None


def _convert_foreign(content: object, src: str,
                     given: Mapping[str, object]) -> tuple[MaskedAutoencoderViT, LoadReport, dict[str, Setting]]:
    """A foreign file (released USF-MAE, Facebook, MONAI, wrapped) loaded into the MAE whose settings ``given``
    names, else the file's Facebook training ``args`` (:func:`_facebook_args`), else what its weights fix
    (:func:`_weights_settings`), else :data:`CONVERT_DEFAULTS`. Returns (model, load report, settings with their
    origins)."""

    _refuse_encoder_only(content, src)
    found = _facebook_args(content, src, check_model="arch" not in given)
    shown = _weights_settings(content)
    settings: dict[str, Setting] = {}
    for key, default in CONVERT_DEFAULTS.items():
        settings[key] = ((given[key], "given") if key in given else (found[key], "the file's args") if key in found
                         else (shown[key], "the file's weights") if key in shown else (default, "default"))
    values = {key: value for key, (value, _) in settings.items()}
    model = build_mae(values.pop("arch"), **values)
    return model, load_mae_weights(model, content, name=src), settings


def _weights_settings(content: object) -> dict[str, object]:
    """The settings a foreign file's weights fix: ``in_chans`` (its patch kernel's channels, 1 or 3) and ``img_size``
    (the side of its square position grid times the kernel's); ``{}`` where they tell nothing (an unknown layout is
    refused by the load, naming the file).

    Without them a 64-px or gray MAE saved as a plain state dict became the default 224-px, 3-channel MAE: its
    position embeddings resized and its kernel spread over three channels, said only by "(default)" in the summary.
    """
    try:
        _, state_dict = to_state_dict(content)
    except CheckpointError:
        return {}
    kernel, pos = state_dict.get("patch_embed.proj.weight"), state_dict.get("pos_embed")
    if kernel is None or kernel.ndim != 4:
        return {}
    found: dict[str, object] = {"in_chans": int(kernel.shape[1])} if kernel.shape[1] in (1, 3) else {}
    if pos is not None and pos.ndim == 3 and kernel.shape[-1] == kernel.shape[-2]:
        side = math.isqrt(max(pos.shape[1] - 1, 0))  # after the cls slot, which every foreign layout has
        if side > 0 and side * side == pos.shape[1] - 1:
            found["img_size"] = side * int(kernel.shape[-1])
    return found


def _refuse_encoder_only(content: object, src: str) -> None:
    """Refuse a foreign file that holds an encoder only (a timm or MONAI ViT, a fine-tuned classifier): the strict
    load listed each of the MAE's decoder keys as missing, 3.6 KB of text, where the file needs no conversion.

    Raises:
        CheckpointError: ``src`` of a known layout without any ``decoder_`` key, naming it and what to do instead.
    """
    try:
        layout, state_dict = to_state_dict(content)
    except CheckpointError:  # an unknown layout: the load refuses it, naming the file
        return
    if not any(key.startswith("decoder_") for key in state_dict):
        raise CheckpointError(f"{src}: its {layout!r} weights are an encoder only (no decoder_* keys): an encoder-only "
                              "ViT or classifier has no decoder to convert; give it as --init_checkpoint of "
                              "usf_mae_classify or usf_mae_segment")


def _facebook_args(content: object, src: str, check_model: bool) -> dict[str, object]:
    """The MAE settings a Facebook training checkpoint's ``args`` (an ``argparse.Namespace``, which the safe reader
    allows) record: ``arch`` from ``model``, ``img_size`` from ``input_size``, ``norm_pix_loss``; ``{}`` where it
    has none. Without them a 64-px ``--norm_pix_loss`` run was converted to a 224-px raw-pixel MAE.

    Args:
        content: the file's content.
        src: the file, for the message.
        check_model: take ``model`` (refusing one of no registered architecture): no --arch was given.

    Raises:
        ValueError: a recorded value this project cannot build, quoting it.
    """
    args = content.get("args") if isinstance(content, Mapping) else None
    args = vars(args) if isinstance(args, argparse.Namespace) else args
    if not isinstance(args, Mapping):
        return {}
    found: dict[str, object] = {}
    if "model" in args and check_model:
        found["arch"] = registered_arch(args["model"], src)
    size = args.get("input_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{src}: its args have input_size {size!r}, not a whole number of pixels; give --img_size")
        found["img_size"] = size
    if "norm_pix_loss" in args:
        if not isinstance(args["norm_pix_loss"], bool):
            raise ValueError(f"{src}: its args have norm_pix_loss {args['norm_pix_loss']!r}, not True or False; give "
                             "--norm_pix_loss or --nonorm_pix_loss")
        found["norm_pix_loss"] = args["norm_pix_loss"]
    return found


def registered_arch(model: object, src: str) -> str:
    """The registered architecture a Facebook ``args.model`` names (its ``models_mae`` aliases included).

    Raises:
        ValueError: a name of no registered architecture (``mae_vit_huge_patch14``), quoting it.
    """

    name = FACEBOOK_MAE_NAMES.get(model, model) if isinstance(model, str) else None
    if name not in MAE_FACTORIES:
        raise ValueError(f"{src}: its args name model {model!r}, which is not a registered architecture "
                         f"({', '.join(sorted(MAE_FACTORIES))}); give --arch")
    return name


def _mae_record(content: object, src: str) -> tuple[Mapping[str, object], Mapping[str, object]]:
    """(config, arch_args) a file of this project records (empty for foreign files); a file of another kind is
    refused: its keys would be listed at length as a mismatch with an MAE."""
    arch = content.get("arch") if isinstance(content, Mapping) else None
    if not isinstance(arch, Mapping):
        return {}, {}
    kind = arch.get("kind")
    if kind not in (None, "mae"):
        raise ValueError(f"{src} is a {kind!r} checkpoint; convert-checkpoint converts MAE checkpoints (a pretraining "
                         "bundle's, the released USF-MAE, Facebook's MAE), and a fine-tuned model needs no conversion")
    return arch.get("config") or {}, arch.get("arch_args") or {}


