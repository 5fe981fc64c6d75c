"""Batch-level mixup / cutmix for fine-tuning (MAE's fine-tuning recipe uses timm's ``Mixup``).

Written here rather than taken from ``monai.transforms.{MixUp, CutMix}`` because, in MONAI 1.6, ``CutMix.__call__``
mixes the labels with the *image* mask function (``apply`` instead of ``apply_on_labels``), its label weight ignores
the part of the box clipped at the border, and both classes fix the batch size at construction, which breaks on a
short last batch. timm's ``Mixup`` is the reference; timm is not a dependency of this project.
"""

from __future__ import annotations

import math

import torch
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends


class MixupCutmix(RandomizableTransform):
    """Mix a batch with a permutation of itself: mixup (convex blend) or cutmix (pasted box), soft targets out.

    One draw per batch, as timm's default ``mode="batch"``: a mixing weight ``lam ~ Beta(alpha, alpha)``, a permutation
    and, for cutmix, a box of area ``(1 - lam) * H * W``. With cutmix the target weight is corrected to the box's area
    after clipping at the image border, so targets always match the pixels.

    Args:
        num_classes: K, the width of the soft targets.
        mixup_alpha: Beta parameter for mixup (0 disables mixup).
        cutmix_alpha: Beta parameter for cutmix (0 disables cutmix).
        prob: probability that a batch is mixed at all.
        switch_prob: with both enabled, probability of cutmix instead of mixup.

    Call with ``images`` (N, C, H, W) and integer ``labels`` (N,); returns mixed images (N, C, H, W), same dtype and
    device, and soft targets (N, K) float32 whose rows sum to 1. An unmixed batch returns one-hot targets.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5) -> None:
        super().__init__(prob=prob)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes!r}")
        for name, alpha in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if alpha < 0:
                raise ValueError(f"{name} must be >= 0, got {alpha!r}")
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ValueError("mixup_alpha and cutmix_alpha are both 0: nothing to mix")
        if not 0.0 <= switch_prob <= 1.0:
            raise ValueError(f"switch_prob must be in [0, 1], got {switch_prob!r}")
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.switch_prob = switch_prob
        self._lam = 1.0
        self._use_cutmix = False
        self._perm: list[int] = []
        self._box_center = (0.0, 0.0)

    def randomize(self, batch_size: int) -> None:
        """Draw whether to mix, mixup or cutmix, the weight, the permutation and the box centre (all from ``self.R``)."""
        super().randomize(None)
        self._use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or self.R.rand() < self.switch_prob)
        alpha = self.cutmix_alpha if self._use_cutmix else self.mixup_alpha
        self._lam = float(self.R.beta(alpha, alpha))
        self._perm = self.R.permutation(batch_size).tolist()
        self._box_center = (float(self.R.rand()), float(self.R.rand()))

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the cutmix box for the current draw, clipped to the image."""
        cut = math.sqrt(1.0 - self._lam)
        cy, cx = self._box_center[0] * height, self._box_center[1] * width
        half_h, half_w = cut * height / 2, cut * width / 2
        top, bottom = int(max(cy - half_h, 0)), int(min(cy + half_h, height))
        left, right = int(max(cx - half_w, 0)), int(min(cx + half_w, width))
        return top, bottom, left, right

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 randomize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)!r} and "
                             f"{tuple(labels.shape)!r}")
        if randomize:
            self.randomize(images.shape[0])
        targets = torch.nn.functional.one_hot(labels.long(), self.num_classes).float()
        if not self._do_transform:
            return images, targets
        perm = torch.as_tensor(self._perm, device=images.device)
        lam = self._lam
        if self._use_cutmix:
            top, bottom, left, right = self.box(images.shape[-2], images.shape[-1])
            images = images.clone()
            images[..., top:bottom, left:right] = images[perm][..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (images.shape[-2] * images.shape[-1])
        else:
            mixed = images.float() * lam + images[perm].float() * (1.0 - lam)
            # the documented same dtype: an integer batch (uint8 frames) is blended in float and rounded back
            images = mixed.to(images.dtype) if images.is_floating_point() else mixed.round().to(images.dtype)
        return images, targets * lam + targets[perm] * (1.0 - lam)
