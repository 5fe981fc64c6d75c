"""Optimiser groups and the warmup-cosine schedule against MAE's lr_sched formula; layer-wise lr decay against MAE's
lr_decay.py."""

from __future__ import annotations

import math
import re

import pytest
import torch

from monai_ext.engines.classification import freeze_encoder
from monai_ext.engines.optim import (
    WarmupCosineLR,
    build_adamw,
    param_groups_layer_decay,
    param_groups_weight_decay,
    scaled_lr,
    warmup_cosine_factor,
)
from monai_ext.networks.classifier import ViTClassifier
from monai_ext.networks.mae import MaskedAutoencoderViT

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=4, decoder_embed_dim=16, decoder_depth=1,
            decoder_num_heads=2)


def mae_lr(step: float, warmup: float, total: float, lr: float, min_lr: float) -> float:
    """facebookresearch/mae util/lr_sched.adjust_learning_rate, with steps in place of fractional epochs."""
    if step < warmup:
        return lr * step / warmup
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def test_schedule_follows_mae_formula() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1e-3)
    sched = WarmupCosineLR(opt, total_steps=100, warmup_fraction=0.1, min_lr=1e-5)
    for step in range(100):
        # ours is evaluated after `step` optimiser steps: warmup counts the current step (no zero-lr first step)
        expected = mae_lr(step + 1, 10, 100, 1e-3, 1e-5) if step < 10 else mae_lr(step, 10, 100, 1e-3, 1e-5)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9, abs=1e-12), step
        opt.step()
        sched.step()


@pytest.mark.parametrize("past", [0, 1, 45, 90, 1000])
def test_steps_past_the_end_of_the_schedule_stay_at_min_lr(past) -> None:
    """Steps beyond ``total_steps`` (a last partial window, a resume with more iterations than planned) continued the
    cosine: the lr climbed back towards its peak, reached again 90 steps past the end of this schedule."""
    assert warmup_cosine_factor(100 + past, 10, 100, 0.01) == pytest.approx(0.01, abs=1e-12)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = WarmupCosineLR(opt, total_steps=100, warmup_steps=10, min_lr=1e-5)
    for _ in range(100 + past):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5, rel=1e-9)


@pytest.mark.parametrize("peak, min_lr, warned", [(9.375e-6, 1e-5, True), (1e-5, 1e-5, True), (1e-3, 1e-5, False)])
def test_a_min_lr_at_or_above_the_peak_is_warned(caplog, peak, min_lr, warned) -> None:
    """The pretraining default (base lr 1.5e-4, min_lr 1e-5) on one GPU with a batch of 16 peaks at 9.4e-6: the
    lr stayed flat at its peak for the whole run without a word."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    with caplog.at_level("WARNING", logger="monai_ext.engines.optim"):
        WarmupCosineLR(opt, total_steps=100, warmup_steps=10, min_lr=min_lr)
    assert (f"min_lr {min_lr:g} is not below the peak lr {peak:g}" in caplog.text) is warned


def test_schedule_state_round_trip() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosineLR(opt, total_steps=50, warmup_steps=5, min_lr=0.1)
    for _ in range(17):
        opt.step()
        sched.step()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = WarmupCosineLR(opt2, total_steps=50, warmup_steps=5, min_lr=0.1)
    sched2.load_state_dict(sched.state_dict())
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_no_weight_decay_on_norms_biases_and_tokens() -> None:
    model = MaskedAutoencoderViT(**TINY)
    decay, no_decay = param_groups_weight_decay(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    plain = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "mask_token", "norm.weight", "blocks.0.attn.qkv.bias"} <= plain
    assert all(names[id(p)].endswith("weight") and p.ndim >= 2 for p in decay["params"])
    assert "pos_embed" not in plain  # frozen: in no group at all
    everything = param_groups_weight_decay(model, 0.05, no_decay_all=True)
    assert len(everything[1]["params"]) == 0
    opt = build_adamw(model, 1e-3, 0.05)
    assert opt.param_groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("base_lr, batch", [(-1, 64), ("1e-3x", 16), (float("nan"), 16), (1e-3, "16"), (1e-3, True),
                                            (1e-3, 16.5)])
def test_scaled_lr_refuses_what_is_not_a_positive_lr_and_a_whole_batch(base_lr, batch) -> None:
    """Command-line typos arrive as text (--base_lr 1e-3x): a ValueError quoting them, not a TypeError from '<='."""
    with pytest.raises(ValueError, match=re.escape(repr(base_lr))):
        scaled_lr(base_lr, batch)


def test_bad_values() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="total_steps must be at least 1, got 0"):
        WarmupCosineLR(opt, total_steps=0)


# --- facebookresearch/mae util/lr_decay.py, written out -----------------------------------------------------------
def param_groups_lrd(model, weight_decay=0.05, no_weight_decay_list=(), layer_decay=0.75):
    param_groups = {}
    num_layers = len(model.blocks) + 1
    layer_scales = list(layer_decay ** (num_layers - i) for i in range(num_layers + 1))  # noqa: C400  (verbatim)
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # no decay: all 1D parameters and model specific ones
        if p.ndim == 1 or n in no_weight_decay_list:
            g_decay = "no_decay"
            this_decay = 0.0
        else:
            g_decay = "decay"
            this_decay = weight_decay
        layer_id = get_layer_id_for_vit(n, num_layers)
        group_name = "layer_%d_%s" % (layer_id, g_decay)  # noqa: UP031  (verbatim)
        if group_name not in param_groups:
            param_groups[group_name] = {"lr_scale": layer_scales[layer_id], "weight_decay": this_decay, "params": []}
        param_groups[group_name]["params"].append(p)
    return list(param_groups.values())


def get_layer_id_for_vit(name, num_layers):
    if name in ["cls_token", "pos_embed"]:  # noqa: SIM114  (verbatim)
        return 0
    elif name.startswith("patch_embed"):
        return 0
    elif name.startswith("blocks"):
        return int(name.split(".")[1]) + 1
    else:
        return num_layers
# --- end of the reference; timm's VisionTransformer.no_weight_decay() is the list MAE's main_finetune passes ------
TIMM_NO_WEIGHT_DECAY = {"pos_embed", "cls_token", "dist_token"}


def by_parameter(groups: list[dict], lr: float) -> dict[int, tuple[float, float, float]]:
    """id(param) -> (lr, lr_scale, weight_decay), rounded; MAE's lr_sched sets a group's lr to lr * lr_scale."""
    return {id(p): tuple(round(v, 12) for v in (g.get("lr", lr * g["lr_scale"]), g["lr_scale"], g["weight_decay"]))
            for g in groups for p in g["params"]}


class Wrapped(torch.nn.Module):
    """A DDP-like wrapper: the network under ``.module``."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module


@pytest.mark.parametrize("global_pool", ["avg", "cls"])
@pytest.mark.parametrize("layer_decay", [0.75, 0.65, 1.0])
@pytest.mark.parametrize("wrap", ["none", "module", "compiled"])
@pytest.mark.parametrize("linear_probe", [False, True])
def test_layer_decay_groups_equal_facebook_mae(global_pool: str, layer_decay: float, wrap: str,
                                               linear_probe: bool) -> None:
    model = ViTClassifier(4, img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, global_pool=global_pool,
                          linear_probe=linear_probe)
    if linear_probe:
        freeze_encoder(model)
    lr = 1e-3
    # torch.compile wraps without compiling (that waits for the first call): its names start with "_orig_mod."
    wrapped = {"none": model, "module": Wrapped(model), "compiled": torch.compile(model)}[wrap]
    ours = param_groups_layer_decay(wrapped, lr, 0.05, layer_decay)
    reference = param_groups_lrd(model, 0.05, TIMM_NO_WEIGHT_DECAY, layer_decay)
    assert by_parameter(ours, lr) == by_parameter(reference, lr)
    # the same partition into groups, parameters in the same order (the optimiser state follows it)
    assert sorted([id(p) for p in g["params"]] for g in ours) == sorted([id(p) for p in g["params"]] for g in reference)
    if not linear_probe:
        scales = {name: by_parameter(ours, lr)[id(p)][1] for name, p in model.named_parameters()}
        assert scales["patch_embed.proj.weight"] == pytest.approx(layer_decay ** 4)
        assert scales["blocks.2.mlp.fc1.weight"] == pytest.approx(layer_decay)
        assert scales["head.weight"] == 1.0


@pytest.mark.parametrize(
    ("base_lr", "batch", "accumulation", "world", "expected"),
    [
        (1.5e-4, 64, 1, 1, 1.5e-4 / 4),  # MAE: blr 1.5e-4 at batch 64 on one GPU
        (1.5e-4, 64, 1, 64, 1.5e-4 * 16),  # 64 GPUs: effective batch 4096, as in the MAE paper
        (1.5e-4, 64, 4, 16, 1.5e-4 * 16),  # the same effective batch with accumulation on a quarter of the GPUs
        (1.0e-3, 32, 2, 3, 1.0e-3 * 192 / 256),  # fine-tuning: an odd world size
    ],
)
def test_lr_rule_counts_batch_accumulation_and_world(base_lr, batch, accumulation, world, expected) -> None:
    assert scaled_lr(base_lr, batch, accumulation, world) == pytest.approx(expected, rel=1e-12)
    # accumulation and world size are interchangeable: only the effective batch matters
    assert scaled_lr(base_lr, batch * accumulation * world) == pytest.approx(expected, rel=1e-12)


def test_lr_rule_is_printed_with_its_parts(capsys) -> None:
    scaled_lr(1.5e-4, 64, 4, 16, announce=True)
    line = capsys.readouterr().out.strip()
    assert line == "lr = base_lr 0.00015 x batch 64 x accumulation 4 x world 16 / 256 = 0.0024 (effective batch 4096)"
    scaled_lr(1.5e-4, 64, 4, 16)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("bad", [(0.0, 64, 1, 1), (1e-4, 0, 1, 1), (1e-4, 64, 0, 1), (1e-4, 64, 1, 0), (1e-4, 64, 1.5, 1)])
def test_lr_rule_rejects_bad_parts(bad) -> None:
    with pytest.raises(ValueError, match="base_lr"):
        scaled_lr(*bad)


def test_a_monai_vit_gets_facebook_maes_groups_with_its_position_embeddings_undecayed() -> None:
    """An external ``network_def`` of MONAI's ViT learns ``patch_embedding.position_embeddings`` (3-D): fine-tuning
    decayed it with the weight matrices, where MAE (timm's ``no_weight_decay``) exempts the position embedding."""
    from monai.networks.nets import ViT

    model = ViT(3, (32, 32), (16, 16), hidden_size=32, mlp_dim=64, num_layers=2, num_heads=4, spatial_dims=2,
                classification=True, num_classes=3)
    lr = 1e-3
    ours = param_groups_layer_decay(model, lr, 0.05, 0.75)
    # MONAI's names for timm's {"pos_embed", "cls_token"}; MAE's layer ids already read patch_embedding.* as layer 0
    reference = param_groups_lrd(model, 0.05, {"patch_embedding.position_embeddings", "cls_token"}, 0.75)
    assert by_parameter(ours, lr) == by_parameter(reference, lr)
    assert by_parameter(ours, lr)[id(model.patch_embedding.position_embeddings)] == (
        round(lr * 0.75 ** 3, 12), round(0.75 ** 3, 12), 0.0)


def test_monai_mae_tokens_get_no_weight_decay() -> None:
    """MONAI's MaskedAutoEncoderViT names its mask token ``mask_tokens``: it was decayed like a weight matrix."""
    from monai.networks.nets import MaskedAutoEncoderViT as MonaiMAE

    model = MonaiMAE(3, (32, 32), (16, 16), hidden_size=32, mlp_dim=64, num_layers=1, num_heads=4,
                     decoder_hidden_size=16, decoder_mlp_dim=32, decoder_num_layers=1, decoder_num_heads=4,
                     spatial_dims=2)
    decay, no_decay = param_groups_weight_decay(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {"cls_token", "mask_tokens"} <= {names[id(p)] for p in no_decay["params"]}
    assert all(p.ndim >= 2 and names[id(p)].endswith("weight") for p in decay["params"])


def test_a_negative_warmup_is_refused() -> None:
    """warmup_steps=-10 started the run part-way down the cosine (0.98 of the peak at the first step) without a word."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="warmup_steps must be at least 0, got -10"):
        WarmupCosineLR(opt, total_steps=100, warmup_steps=-10)


def test_a_schedule_step_before_the_first_optimiser_step_says_nothing() -> None:
    """With gradient accumulation the schedule steps every micro-batch, before the first optimiser step: PyTorch
    warned that the schedule's first value was skipped, which it never is (the lr comes from the step count)."""
    import warnings

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosineLR(opt, total_steps=10, warmup_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()  # micro-batch 1 of a window of 2: no optimiser step yet
    opt.step()
    sched.step()
    assert sched.last_epoch == 2 and opt.param_groups[0]["lr"] == pytest.approx(warmup_cosine_factor(2, 2, 10, 0.0))


def _warns_each_iteration() -> None:
    """A transform or a model call that warns at every iteration."""
    import warnings

    warnings.warn("deprecated at every iteration", UserWarning, stacklevel=1)


def test_a_warning_raised_at_every_iteration_is_not_shown_again_at_every_schedule_step() -> None:
    """The schedule's step filtered PyTorch's warning inside ``catch_warnings`` at every step, which resets the record
    of warnings already shown: a warning Python shows once per place was shown at every iteration."""
    import warnings

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosineLR(opt, total_steps=100, warmup_steps=2)
    shown = []
    with warnings.catch_warnings():  # restores showwarning too
        warnings.simplefilter("default")  # Python's own for UserWarning: once per place
        warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
        for _ in range(6):
            _warns_each_iteration()
            opt.step()
            sched.step()
    # the first step's filter may show it once more; never once per step
    assert 1 <= shown.count("deprecated at every iteration") <= 2, shown
