"""Checkpoint interoperability: released USF-MAE, Facebook MAE, timm, MONAI, training checkpoints that nest any of
these (PyTorch Lightning's ``state_dict``) and this project's own files.

``layouts`` recognises a file and maps it to this project's key names (one pure filter per layout), ``adapt`` fits it
to a model of another size, ``load`` loads with the exact missing and dropped keys checked, ``save`` writes files that
rebuild their model. Reading the file itself (``weights_only=True``) is :mod:`monai_ext.io.checkpoints`.
"""

from __future__ import annotations

from monai_ext.io.atomic import atomic_torch_save
from monai_ext.io.checkpoints import CheckpointError, read_checkpoint, sha256_of
from monai_ext.networks.checkpoints.adapt import (
    adapt_decoder_pred_channels,
    adapt_patch_embed,
    adapt_to_model,
    check_shapes,
    interpolate_pos_embed,
)
from monai_ext.networks.checkpoints.layouts import (
    FORMAT_NAME,
    FORMAT_VERSION,
    PREFIXES,
    USF_MAE_100EP_SHA256,
    StateDict,
    detect_layout,
    filter_facebook_mae,
    filter_monai_ext,
    filter_monai_mae,
    filter_monai_vit,
    filter_timm_vit,
    filter_usf_mae,
    filter_wrapped,
    strip_prefixes,
    to_state_dict,
    unwrap_container,
    unwrapped,
)
from monai_ext.networks.checkpoints.load import (
    LoadReport,
    build_from_checkpoint,
    check_class_count,
    checkpoint_mapping,
    load_encoder_weights,
    load_mae_weights,
)
from monai_ext.networks.checkpoints.save import arch_record, save_model_checkpoint

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "PREFIXES", "USF_MAE_100EP_SHA256", "CheckpointError", "LoadReport", "StateDict",
    "adapt_decoder_pred_channels", "adapt_patch_embed", "adapt_to_model", "arch_record", "atomic_torch_save",
    "build_from_checkpoint", "check_class_count", "check_shapes", "checkpoint_mapping", "detect_layout", "filter_facebook_mae",
    "filter_monai_ext", "filter_monai_mae", "filter_monai_vit", "filter_timm_vit", "filter_usf_mae", "filter_wrapped",
    "interpolate_pos_embed", "load_encoder_weights", "load_mae_weights", "read_checkpoint", "save_model_checkpoint",
    "sha256_of", "strip_prefixes", "to_state_dict", "unwrap_container", "unwrapped",
]
