"""Loading foreign or own checkpoints into this project's models with the exact missing and dropped keys checked.

Following timm's ``checkpoint_filter_fn`` pattern, the file is first mapped to this project's MAE key names by its
layout's filter (:mod:`.layouts`) and fitted to the model (:mod:`.adapt`); loading then checks the exact sets of
missing and dropped keys instead of trusting a silent ``strict=False``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from monai_ext.io.checkpoints import CheckpointError, read_checkpoint
from monai_ext.networks.checkpoints.adapt import adapt_to_model, check_heads, check_shapes, recorded_geometry
from monai_ext.networks.checkpoints.layouts import (
    FORMAT_NAME,
    StateDict,
    detect_layout,
    filter_monai_ext,
    to_state_dict,
    unwrapped,
)


@dataclass
class LoadReport:
    """What a load did: the source layout, parameters the model kept at initialisation, and what was left out."""

    layout: str
    missing: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: the layout, and the counts (top-level module names) of new, dropped and adapted keys."""

        def brief(keys: list[str]) -> str:
            groups = sorted({k.split(".")[0] for k in keys})
            return f"{len(keys)} ({', '.join(groups)})" if keys else "0"

        return (
            f"layout={self.layout}; new (initialised here)={brief(self.missing)}; "
            f"dropped={brief(self.dropped)}; adapted={self.adapted or 'none'}"
        )


@dataclass
class _Source:
    """A checkpoint read and mapped to this project's key names."""

    layout: str
    state_dict: StateDict
    name: str
    geometry: dict[str, Any]  # what the file records of its grid and heads (recorded_geometry)


def _names_a_file(source: object, content_given: bool) -> bool:
    """Whether ``source`` is a path to read rather than a checkpoint's content.

    A ``str`` or :class:`os.PathLike` is a path, and so is a number where no name says ``source`` is content
    (``--ckpt_path 2024`` arrives from the command line as an int; :func:`read_checkpoint` takes its text back). Any
    other type is content: a file holding a list was read as the path "1,2,3" ("does not exist").
    """
    if isinstance(source, (str, os.PathLike)):
        return True
    return not content_given and isinstance(source, (int, float)) and not isinstance(source, bool)


def _content(source: object, sha256: str | None, name: str, is_path: bool) -> Mapping[str, Any]:
    """The checkpoint ``source`` is (a mapping, read already) or names (``is_path``: read here).

    Callers that read a file first check its content with :func:`checkpoint_mapping`: one holding a path string was
    otherwise taken for that other file's path, and converted it without a word.

    Raises:
        CheckpointError: ``source``, or the file it names, holds anything but a mapping, naming ``name``.
    """
    if isinstance(source, Mapping):
        return source
    if not is_path:
        raise CheckpointError(f"{name}: a checkpoint must be a dict, got {type(source).__name__!r}")
    return checkpoint_mapping(read_checkpoint(source, sha256), name)


def checkpoint_mapping(content: Any, name: str | os.PathLike) -> Mapping[str, Any]:
    """``content``, a checkpoint file's, once it is a mapping (every layout is one: a state dict or a dict holding one).

    Callers that read a file and pass its content on check it here first: a file holding a ``str`` would otherwise be
    taken for the path of another checkpoint by the loaders, which accept a path or content.

    Raises:
        CheckpointError: ``content`` is not a mapping, naming the file ``name`` and the type found.
    """
    if not isinstance(content, Mapping):
        raise CheckpointError(f"{name}: a checkpoint must be a dict, got {type(content).__name__!r}")
    return content


def _resolve(source: str | os.PathLike | Mapping[str, Any], sha256: str | None, name: str | None = None) -> _Source:
    is_path = _names_a_file(source, content_given=name is not None)
    name = name or (str(source) if is_path else "<in-memory checkpoint>")
    checkpoint = _content(source, sha256, name, is_path)
    try:
        layout, state_dict = to_state_dict(checkpoint)
        geometry = recorded_geometry(checkpoint)
    except CheckpointError as e:  # the layout's refusal names no file: a run with several checkpoints says which
        raise CheckpointError(f"{name}: {e}") from e
    return _Source(layout, state_dict, name, geometry)


def _adapted(source: _Source, state_dict: StateDict, model: nn.Module) -> tuple[StateDict, list[str]]:
    """``state_dict`` fitted to ``model`` (:func:`adapt_to_model`), a refusal naming the file."""
    try:
        check_heads(source.geometry, model)
        return adapt_to_model(state_dict, model, source.geometry.get("grid"))
    except CheckpointError as e:
        raise CheckpointError(f"{source.name}: {e}") from e


def _load_exact(
    model: nn.Module, state_dict: StateDict, expected_missing: set[str], report: LoadReport, name: str
) -> LoadReport:
    """Load, then assert that exactly ``expected_missing`` were missing and nothing unexpected arrived."""
    check_shapes(state_dict, model, name)
    result = model.load_state_dict(state_dict, strict=False)
    missing, unexpected = set(result.missing_keys), set(result.unexpected_keys)
    # BatchNorm never reports its num_batches_tracked counter as missing (torch keeps old files loadable).
    expected_missing = {k for k in expected_missing if not k.endswith("num_batches_tracked")}
    if missing != expected_missing or unexpected:
        raise CheckpointError(
            f"{name}: keys do not match the model. Missing beyond the expected: {_some(missing - expected_missing)}; "
            f"expected missing but provided: {_some(expected_missing - missing)}; unexpected: {_some(unexpected)}"
        )
    report.missing = sorted(missing)
    return report


#: Keys a refusal quotes of each kind; the rest are counted. A file of another depth listed every key of the blocks
#: it lacks (a 6 KB line for eleven blocks of a ViT-B).
QUOTED_KEYS = 8


def _some(keys: set[str]) -> str:
    """The first :data:`QUOTED_KEYS` of ``keys`` (sorted) as a list, with the count of the others."""
    listed = sorted(keys)
    more = len(listed) - QUOTED_KEYS
    return f"{listed[:QUOTED_KEYS]!r}" + (f" and {more} more" if more > 0 else "")


def load_mae_weights(
    model: nn.Module, source: str | os.PathLike | Mapping[str, Any], sha256: str | None = None,
    name: str | None = None,
) -> LoadReport:
    """Load a full MAE (encoder and decoder) from any known layout into ``model``, strictly.

    Every model key must be provided and every provided key used, after position grids and channels are adapted.
    ``name`` names the file in errors when ``source`` is its content, read already. A compiled or DDP-wrapped
    ``model`` is loaded through the network it wraps (:func:`unwrapped`).
    """
    model = unwrapped(model)
    found = _resolve(source, sha256, name)
    _refuse_encoder_only(found, model)
    state_dict, adapted = _adapted(found, found.state_dict, model)
    report = LoadReport(layout=found.layout, adapted=adapted)
    return _load_exact(model, state_dict, set(), report, found.name)


def _refuse_encoder_only(found: _Source, model: nn.Module) -> None:
    """Refuse a file that holds an encoder without the MAE's decoder, saying so (it listed some 40 decoder keys).

    Raises:
        CheckpointError: naming the file, what it holds and the files that hold a whole MAE.
    """
    decoder = {k for k in model.state_dict() if k.startswith(("decoder_", "mask_token"))}
    # every decoder key missing, not some: a whole MAE saved without its fixed decoder_pos_embed is no encoder
    if decoder and set(model.state_dict()) - set(found.state_dict) == decoder:
        raise CheckpointError(
            f"{found.name}: holds an encoder only (layout {found.layout!r}, no decoder or mask token: a ViT, or "
            "Facebook's mae_pretrain_vit_base.pth rather than mae_pretrain_vit_base_full.pth), but this needs the "
            "whole MAE: the released USF-MAE, Facebook's _full file or a pretraining models/model.pt")


#: What fine-tuning may leave out of a pretraining or classification checkpoint: the MAE's decoder and mask token,
#: a foreign head (and DeiT's distillation head), the final norm a pooling does not use. Any other key left out means
#: the checkpoint's encoder is not this model's, and is refused (timm's rule: name exactly what does not load).
ENCODER_DROPPABLE = ("decoder_", "mask_token", "head.", "head_dist.", "fc_norm.", "norm.", "pre_logits.")


def load_encoder_weights(
    model: nn.Module, source: str | os.PathLike | Mapping[str, Any], sha256: str | None = None,
    name: str | None = None,
) -> LoadReport:
    """Initialise the encoder of a :class:`ViTClassifier` or :class:`ViTSegmenter` from an MAE or ViT checkpoint.

    Keys the classifier has no use for (:data:`ENCODER_DROPPABLE`: decoder, mask token, a foreign head, the unused
    final norm), and keys of modules the encoder does not have (a loss's weights), are dropped and reported; a key
    inside the encoder's own modules that the model lacks is refused, naming it (a deeper encoder, or blocks with
    LayerScale or qk-norm, would otherwise be cut to fit without a word). The head (and ``fc_norm`` with
    average pooling) must be exactly the keys left at initialisation.
    ``name`` names the file in errors when ``source`` is its content, read already. A compiled or DDP-wrapped
    ``model`` is loaded through the network it wraps (:func:`unwrapped`).

    Raises:
        TypeError: ``model`` has no encoder of its own to fill (an MAE: ``load_mae_weights`` loads a whole one),
            naming its type; it was an ``AttributeError`` about ``encoder_parameter_names``.
    """
    model = unwrapped(model)
    if not callable(getattr(model, "encoder_parameter_names", None)):
        raise TypeError(f"load_encoder_weights fills the encoder of a ViTClassifier or a ViTSegmenter, not of a "
                        f"{type(model).__name__}; an MAE loads a whole MAE with load_mae_weights")
    found = _resolve(source, sha256, name)
    layout, state_dict, name = found.layout, found.state_dict, found.name
    wanted = set(model.encoder_parameter_names())
    absent = sorted(wanted - set(state_dict))
    if absent:
        # an average-pooling classifier replaces the encoder's final norm by fc_norm (MAE's fine-tuning recipe)
        hint = ("; a classifier fine-tuned with average pooling has no final norm: start from the MAE it was "
                "fine-tuned from" if all(k.startswith("norm.") for k in absent) and "fc_norm.weight" in state_dict
                else "")
        raise CheckpointError(f"{name}: layout {layout!r} lacks encoder keys {absent[:8]!r}{hint}")
    dropped = sorted(set(state_dict) - wanted)
    # a key inside one of the encoder's own modules (blocks, patch_embed, ...) that the model lacks; keys of other
    # modules (a loss's class weights saved with a training module) are dropped and reported
    roots = {k.split(".")[0] for k in wanted}
    foreign = [k for k in dropped if k.split(".")[0] in roots and not k.startswith(ENCODER_DROPPABLE)]
    if foreign:  # a deeper network's blocks, LayerScale gammas, qk-norms: the encoder would start broken
        raise CheckpointError(
            f"{name}: {len(foreign)} encoder key(s) have no place in this model, e.g. {foreign[:6]!r}: the "
            "checkpoint's encoder differs (more blocks, LayerScale or qk-norm); give the matching --arch")
    kept = {k: v for k, v in state_dict.items() if k in wanted}
    kept, adapted = _adapted(found, kept, model)
    report = LoadReport(layout=layout, dropped=dropped, adapted=adapted)
    expected_missing = set(model.state_dict()) - wanted
    return _load_exact(model, kept, expected_missing, report, name)


def check_class_count(record: Mapping[str, Any], name: str) -> None:
    """Refuse an architecture record whose network has another number of outputs than the classes it names.

    A bundle run given ``--num_classes 3`` on a two-class datalist saved such a file: its predictions hold a class
    with no name, which the summaries and reports then left out without a word. Records without both (MAEs, older
    or external files) pass.

    Args:
        record: the checkpoint's ``arch`` record (``arch_args``, ``config``).
        name: the file, for the message.

    Raises:
        CheckpointError: quoting both numbers and the class names.
    """
    num_classes = (record.get("arch_args") or {}).get("num_classes")
    class_names = (record.get("config") or {}).get("class_names")
    if num_classes is not None and class_names is not None and num_classes != len(class_names):
        raise CheckpointError(f"{name}: its network has {num_classes!r} output classes but it names "
                              f"{len(class_names)}, {list(class_names)!r} (trained with a --num_classes other than the "
                              "datalist's class_names): train it again without --num_classes")


def build_from_checkpoint(source: str | os.PathLike | Mapping[str, Any], name: str | None = None) -> nn.Module:
    """Rebuild and load a model from a file written by this project (its ``arch`` record).

    The model comes back in training mode, as torch builds modules: call ``.eval()`` before inference (a linear-probe
    BatchNorm head or a batch-norm decoder otherwise uses and updates batch statistics).

    ``name`` names the file in errors when ``source`` is its content, read already (never the content itself: a
    message quoting a whole state dict runs to megabytes).
    """
    from monai_ext.networks.classifier import ViTClassifier
    from monai_ext.networks.mae import MaskedAutoencoderViT
    from monai_ext.networks.segmentation import ViTSegmenter

    is_path = _names_a_file(source, content_given=name is not None)
    name = name or (str(source) if is_path else "the checkpoint")
    checkpoint = _content(source, None, name, is_path)
    if detect_layout(checkpoint) != "monai_ext":
        hint = ("a training checkpoint, for resuming a run; give the run's models/model.pt (the best model)"
                if {"network", "optimizer"} <= set(checkpoint) else "it carries no architecture record")
        raise CheckpointError(f"{name}: not a {FORMAT_NAME} model checkpoint; {hint}")
    arch = checkpoint["arch"]
    cls = {"mae": MaskedAutoencoderViT, "classifier": ViTClassifier, "segmenter": ViTSegmenter}.get(arch.get("kind"))
    if cls is None:
        raise CheckpointError(f"{name}: unknown model kind {arch.get('kind')!r}")
    check_class_count(arch, name)
    try:
        model = cls(**arch["arch_args"])
    except (TypeError, ValueError) as e:  # an edited record, or one of a newer version with more arguments
        raise CheckpointError(f"{name}: its architecture record does not build a {arch.get('kind')}: {e}") from e
    state_dict = filter_monai_ext(checkpoint)
    check_shapes(state_dict, model, name)
    expected, given = set(model.state_dict()), set(state_dict)
    if expected != given:  # torch's own refusal is a page of keys without the file's name
        raise CheckpointError(f"{name}: keys do not match its architecture record: missing "
                              f"{sorted(expected - given)[:8]!r}, unexpected {sorted(given - expected)[:8]!r}")
    model.load_state_dict(state_dict, strict=True)
    return model
