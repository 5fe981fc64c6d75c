"""Optimiser groups and the warmup-cosine schedule against MAE's lr_sched formula."""

from __future__ import annotations

import math

import pytest
import torch

from monai_ext.engines.optim import WarmupCosineLR, build_adamw, param_groups_weight_decay, scaled_lr
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


def test_bad_values() -> None:
    with pytest.raises(ValueError, match="-1"):
        scaled_lr(-1, 64)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="total_steps must be at least 1, got 0"):
        WarmupCosineLR(opt, total_steps=0)
