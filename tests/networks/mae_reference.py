"""An independent MAE forward pass written from the paper's equations, for parity tests.

It reads the parameters by name from a state dict and uses only elementary tensor operations (explicit loops
over patches, an explicit softmax attention, ``F.layer_norm``), none of ``monai_ext``'s modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def patchify_loops(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, p*p*C) with patches in row-major order and each patch flattened (row, col, channel)."""
    n, c, h, w = imgs.shape
    rows = []
    for i in range(h // p):
        for j in range(w // p):
            patch = imgs[:, :, i * p : (i + 1) * p, j * p : (j + 1) * p]  # (N, C, p, p)
            rows.append(patch.permute(0, 2, 3, 1).reshape(n, -1))
    return torch.stack(rows, dim=1)


def masking_by_argsort(noise: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``int(L(1-r))`` patches with the smallest noise. Returns (kept indices (N, K) ascending-noise, mask)."""
    n, length = noise.shape
    keep = int(length * (1 - mask_ratio))
    order = torch.argsort(noise, dim=1)
    kept = order[:, :keep]
    mask = torch.ones(n, length)
    for b in range(n):
        mask[b, kept[b]] = 0.0
    return kept, mask


def transformer_block(x: torch.Tensor, sd: dict, prefix: str, heads: int, eps: float) -> torch.Tensor:
    def ln(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(t, t.shape[-1:], sd[f"{prefix}.{name}.weight"], sd[f"{prefix}.{name}.bias"], eps)

    def lin(t: torch.Tensor, name: str) -> torch.Tensor:
        return t @ sd[f"{prefix}.{name}.weight"].T + sd[f"{prefix}.{name}.bias"]

    n, t, d = x.shape
    hd = d // heads
    qkv = lin(ln(x, "norm1"), "attn.qkv")
    q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
    outs = []
    for h in range(heads):
        qh, kh, vh = (z[..., h * hd : (h + 1) * hd] for z in (q, k, v))
        attn = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(hd), dim=-1)
        outs.append(attn @ vh)
    x = x + lin(torch.cat(outs, dim=-1), "attn.proj")
    hidden = lin(ln(x, "norm2"), "mlp.fc1")
    hidden = 0.5 * hidden * (1.0 + torch.erf(hidden / math.sqrt(2.0)))  # exact GELU
    return x + lin(hidden, "mlp.fc2")


def mae_reference_forward(
    sd: dict,
    imgs: torch.Tensor,
    noise: torch.Tensor,
    mask_ratio: float,
    patch: int,
    heads: int,
    dec_heads: int,
    depth: int,
    dec_depth: int,
    norm_pix: bool,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss, pred (N, L, p*p*C) and mask (N, L) of an MAE from its parameters, following the paper."""
    n, c = imgs.shape[:2]
    patches = patchify_loops(imgs, patch)
    # Patch embedding: a linear map of each flattened patch. The conv kernel (D, C, p, p) flattens (C, p, p),
    # while our patches are (p, p, C), so reorder the kernel explicitly.
    kernel = sd["patch_embed.proj.weight"].permute(0, 2, 3, 1).reshape(sd["patch_embed.proj.weight"].shape[0], -1)
    tokens = patches @ kernel.T + sd["patch_embed.proj.bias"] + sd["pos_embed"][:, 1:]
    kept, mask = masking_by_argsort(noise, mask_ratio)
    visible = torch.stack([tokens[b, kept[b]] for b in range(n)])
    cls = sd["cls_token"] + sd["pos_embed"][:, :1]
    x = torch.cat([cls.expand(n, -1, -1), visible], dim=1)
    for i in range(depth):
        x = transformer_block(x, sd, f"blocks.{i}", heads, eps)
    x = F.layer_norm(x, x.shape[-1:], sd["norm.weight"], sd["norm.bias"], eps)

    y = x @ sd["decoder_embed.weight"].T + sd["decoder_embed.bias"]
    length = patches.shape[1]
    full = sd["mask_token"].expand(n, length, -1).clone()
    for b in range(n):
        full[b, kept[b]] = y[b, 1:]
    y = torch.cat([y[:, :1], full], dim=1) + sd["decoder_pos_embed"]
    for i in range(dec_depth):
        y = transformer_block(y, sd, f"decoder_blocks.{i}", dec_heads, eps)
    y = F.layer_norm(y, y.shape[-1:], sd["decoder_norm.weight"], sd["decoder_norm.bias"], eps)
    pred = (y @ sd["decoder_pred.weight"].T + sd["decoder_pred.bias"])[:, 1:]

    target = patches
    if norm_pix:
        mu = target.mean(-1, keepdim=True)
        var = ((target - mu) ** 2).sum(-1, keepdim=True) / (target.shape[-1] - 1)
        target = (target - mu) / torch.sqrt(var + 1e-6)
    per_patch = ((pred - target) ** 2).mean(-1)
    loss = (per_patch * mask).sum() / mask.sum()
    return loss, pred, mask
