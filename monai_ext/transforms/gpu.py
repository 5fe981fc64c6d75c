"""Training-time augmentation of a whole batch on the device, so data loading never limits the GPU.

The loader only decodes and collates uint8 frames; :class:`UltrasoundBatchAugment` then does, per sample and in one
pass on the batch's device: random resized crop (torchvision's sampling, optionally anchored at the probe),
horizontal flip and a small rotation (corners black, as the CPU recipe leaves them) as a single ``grid_sample``;
the physics augmentations of :mod:`monai_ext.transforms.physics` (the same functions the CPU transforms call, with
per-sample parameters); and normalisation. Works on CPU tensors too (how the tests compare it with the CPU
transforms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from monai_ext.transforms.intensity import full_scale
from monai_ext.transforms.normalize import NORMALIZATION_MODES, NormalizeUltrasound, normalize_batch
from monai_ext.transforms.physics import (
    NOMINAL_DYNAMIC_RANGE_DB,
    apply_axial_lateral_blur,
    apply_depth_gain,
    apply_dynamic_range,
    apply_gamma_gain,
    apply_speckle,
    check_dynamic_range,
    check_range,
    depth_gain_curve,
    gamma_envelope,
    rayleigh_from_uniform,
)
from monai_ext.transforms.spatial import check_crop_ranges


class UltrasoundBatchAugment:
    """Augment and normalise a batch on its device.

    Args:
        size: output side S.
        scale, ratio, keep_top: random resized crop, as :class:`monai_ext.transforms.RandResizedCrop`.
        flip_prob: probability of a horizontal flip.
        rotate_range: rotations drawn uniformly in [-rotate_range, rotate_range] radians (0: none).
        rotate_prob: probability that a sample is rotated; 0.5, as the bundles' ``RandRotated`` in the ultrasound
            recipe, so the batch path and the per-sample path train on the same mix of turned and upright frames.
        speckle_prob, speckle_strength, speckle_distribution, gamma_shape: as :class:`RandSpeckle`.
        depth_gain_prob, attenuation_db, tgc_db, tgc_nodes: as :class:`RandDepthGain`.
        dynamic_range_prob, range_db: as :class:`RandDynamicRange`.
        gamma_gain_prob, gamma, gain: as :class:`RandGammaGain`.
        blur_prob, axial_sigma, lateral_sigma: as :class:`RandAxialLateralBlur`.
        normalize: "imagenet", "zscore", "corpus" or None (leave in [0, 1]); ``channels``, ``mean``, ``std`` as
            :class:`NormalizeUltrasound`.
        dynamic_range_db: assumed dynamic range of the inputs.
        seed: seed of the per-device generator (None: drawn from torch's global generator, so that
            ``torch.manual_seed`` and MONAI's ``set_determinism`` make a run repeatable, as they do the rest).

    Call with a batch (N, 1, H, W), integer, or float in [0, 1] or [0, 255] (scaled by
    :func:`monai_ext.transforms.intensity.full_scale`), on any device; returns
    (N, channels, S, S) float32 on the same device. Every draw comes from this object's generator.
    """

    def __init__(
        self,
        size: int,
        scale: Sequence[float] = (0.2, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        keep_top: bool = True,
        flip_prob: float = 0.5,
        rotate_range: float = 0.0,
        rotate_prob: float = 0.5,
        speckle_prob: float = 0.0,
        speckle_strength: Sequence[float] = (0.0, 0.5),
        speckle_distribution: str = "rayleigh",
        gamma_shape: Sequence[float] = (1.0, 4.0),
        depth_gain_prob: float = 0.0,
        attenuation_db: Sequence[float] = (-8.0, 8.0),
        tgc_db: Sequence[float] = (-3.0, 3.0),
        tgc_nodes: int = 4,
        dynamic_range_prob: float = 0.0,
        range_db: Sequence[float] = (40.0, 80.0),
        gamma_gain_prob: float = 0.0,
        gamma: Sequence[float] = (0.7, 1.4),
        gain: Sequence[float] = (0.8, 1.25),
        blur_prob: float = 0.0,
        axial_sigma: Sequence[float] = (0.0, 1.5),
        lateral_sigma: Sequence[float] = (0.0, 1.5),
        normalize: str | None = "imagenet",
        channels: int = 3,
        mean: float | None = None,
        std: float | None = None,
        dynamic_range_db: float = NOMINAL_DYNAMIC_RANGE_DB,
        seed: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be positive, got {size!r}")
        check_crop_ranges(scale, ratio)
        if normalize is not None and normalize not in NORMALIZATION_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZATION_MODES} or None, got {normalize!r}")
        if speckle_distribution not in ("rayleigh", "gamma"):
            raise ValueError(f"speckle_distribution must be 'rayleigh' or 'gamma', got {speckle_distribution!r}")
        # the checks of the CPU transforms, so a config fails here and not at the first batch (or never, silently)
        for name, value, low in (("speckle_strength", speckle_strength, 0.0), ("gamma_shape", gamma_shape, 1e-3),
                                 ("attenuation_db", attenuation_db, None), ("tgc_db", tgc_db, None),
                                 ("range_db", range_db, 1.0), ("gamma", gamma, 1e-3), ("gain", gain, 0.0),
                                 ("axial_sigma", axial_sigma, 0.0), ("lateral_sigma", lateral_sigma, 0.0)):
            check_range(name, value, low)
        if tgc_nodes < 1:
            raise ValueError(f"tgc_nodes must be at least 1, got {tgc_nodes!r}")
        if rotate_range < 0:
            raise ValueError(f"rotate_range must be >= 0, got {rotate_range!r}")
        if normalize is not None:
            NormalizeUltrasound(normalize, channels, mean, std)  # checks channels and corpus statistics
        elif channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        for name, p in (("flip_prob", flip_prob), ("rotate_prob", rotate_prob), ("speckle_prob", speckle_prob),
                        ("depth_gain_prob", depth_gain_prob), ("dynamic_range_prob", dynamic_range_prob),
                        ("gamma_gain_prob", gamma_gain_prob), ("blur_prob", blur_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p!r}")
        self.size, self.scale, self.ratio, self.keep_top = size, tuple(scale), tuple(ratio), keep_top
        self.flip_prob, self.rotate_range, self.rotate_prob = flip_prob, rotate_range, rotate_prob
        self.speckle = (speckle_prob, tuple(speckle_strength), speckle_distribution, tuple(gamma_shape))
        self.depth_gain = (depth_gain_prob, tuple(attenuation_db), tuple(tgc_db), tgc_nodes)
        self.dynamic_range = (dynamic_range_prob, tuple(range_db))
        self.gamma_gain = (gamma_gain_prob, tuple(gamma), tuple(gain))
        self.blur = (blur_prob, tuple(axial_sigma), tuple(lateral_sigma))
        self.normalize, self.channels, self.mean, self.std = normalize, channels, mean, std
        self.dynamic_range_db = check_dynamic_range(dynamic_range_db)
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    # ------------------------------------------------------------------------------------------------- randomness
    def set_random_state(self, seed: int | None) -> UltrasoundBatchAugment:
        self.seed, self._generators = seed, {}
        return self

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            g = torch.Generator(device=device)
            seed = self.seed if self.seed is not None else int(torch.randint(2**62, (1,)))
            g.manual_seed(seed)
            self._generators[device] = g
        return self._generators[device]

    def _uniform(self, g: torch.Generator, low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, device=g.device) * (high - low) + low

    def _chosen(self, g: torch.Generator, prob: float, n: int) -> torch.Tensor:
        return torch.rand(n, generator=g, device=g.device) < prob

    # ---------------------------------------------------------------------------------------------------- spatial
    def crop_boxes(self, g: torch.Generator, n: int, height: int, width: int) -> torch.Tensor:
        """Crop boxes (N, 4) as (top, left, h, w), torchvision's sampling: 10 tries, else the ratio-clipped image."""
        area = self._uniform(g, *self.scale, n, 10) * height * width
        log_r = self._uniform(g, math.log(self.ratio[0]), math.log(self.ratio[1]), n, 10)
        w = torch.sqrt(area * log_r.exp()).round()
        h = torch.sqrt(area / log_r.exp()).round()
        valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = valid.float().argmax(1, keepdim=True)
        w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
        fallback_w = min(width, round(height * self.ratio[1])) if width / height > self.ratio[1] else width
        fallback_h = min(height, round(width / self.ratio[0])) if width / height < self.ratio[0] else height
        ok = valid.any(1)
        w = torch.where(ok, w, torch.full_like(w, fallback_w))
        h = torch.where(ok, h, torch.full_like(h, fallback_h))
        top = torch.zeros_like(h) if self.keep_top else (torch.rand(n, generator=g, device=g.device) * (height - h + 1)).floor()
        left = (torch.rand(n, generator=g, device=g.device) * (width - w + 1)).floor()
        if not self.keep_top:
            top = torch.where(ok, top, ((height - h) // 2).to(top))
        left = torch.where(ok, left, ((width - w) // 2).to(left))
        return torch.stack([top, left, h, w], 1)

    def sampling_grid(self, boxes: torch.Tensor, flip: torch.Tensor, angle: torch.Tensor, height: int,
                      width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``grid_sample`` grid for crop boxes (N, 4), flips (N,) and rotation angles (N,) in radians.

        Output pixel centre (i + 0.5) / S maps into the box in continuous pixel coordinates (pixel k spans
        [k, k + 1]), which is ``F.interpolate``'s mapping with ``align_corners=False``; the rotation turns about the
        box centre in pixel units, so it stays a rotation for non-square boxes.

        Returns:
            The grid (N, S, S, 2), and (N, 1, S, S) float in [0, 1]: how much of each output pixel the rotated box
            covers. The CPU recipe rotates the crop it has cut, bilinearly with zero padding: its corners are black,
            never the image around the box, and its edges ramp over one output pixel, as this coverage does.
        """
        s = self.size
        centres = (torch.arange(s, device=boxes.device, dtype=torch.float32) + 0.5) / s
        v, u = torch.meshgrid(centres, centres, indexing="ij")
        u = torch.where(flip.view(-1, 1, 1), 1.0 - u, u)
        top, left, h, w = (boxes[:, k].view(-1, 1, 1) for k in range(4))
        dx, dy = (u - 0.5) * w, (v - 0.5) * h
        cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
        turned_x, turned_y = cos * dx - sin * dy, sin * dx + cos * dy
        # in output pixels (the CPU rotation turns the resized crop): 1 inside, 0.5 on the box edge, 0 beyond
        cover_x = ((w / 2 - turned_x.abs()) * s / w + 0.5).clamp(0, 1)
        cover_y = ((h / 2 - turned_y.abs()) * s / h + 0.5).clamp(0, 1)
        x, y = left + w / 2 + turned_x, top + h / 2 + turned_y
        return torch.stack([x / width * 2 - 1, y / height * 2 - 1], -1), (cover_x * cover_y).unsqueeze(1)

    # -------------------------------------------------------------------------------------------------- intensity
    def _intensity(self, g: torch.Generator, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        prob, attenuation, tgc, nodes = self.depth_gain
        if prob > 0:
            curve = depth_gain_curve(self._uniform(g, *attenuation, n), self._uniform(g, *tgc, n, nodes), h)
            curve = curve * self._chosen(g, prob, n).view(-1, 1)
            x = apply_depth_gain(x, curve, self.dynamic_range_db)
        prob, range_db = self.dynamic_range
        if prob > 0:
            new = torch.where(self._chosen(g, prob, n), self._uniform(g, *range_db, n),
                              torch.full((n,), self.dynamic_range_db, device=x.device))
            x = apply_dynamic_range(x, new, self.dynamic_range_db)
        x = self._speckle(g, x)
        prob, gamma, gain = self.gamma_gain
        if prob > 0:
            chosen = self._chosen(g, prob, n)
            gam = torch.exp(self._uniform(g, math.log(gamma[0]), math.log(gamma[1]), n))
            gan = self._uniform(g, *gain, n)
            x = apply_gamma_gain(x, torch.where(chosen, gam, 1.0), torch.where(chosen, gan, 1.0))
        # blur last, as the bundles' physics recipe orders it: the speckle it smooths is about 5x fainter
        prob, axial, lateral = self.blur
        if prob > 0:
            x = torch.where(self._chosen(g, prob, n).view(-1, 1, 1, 1),
                            apply_axial_lateral_blur(x, self._uniform(g, *axial, n), self._uniform(g, *lateral, n)), x)
        return x

    def _speckle(self, g: torch.Generator, x: torch.Tensor) -> torch.Tensor:
        prob, strength, distribution, gamma_shape = self.speckle
        if prob == 0:
            return x
        n = x.shape[0]
        size = (n, 1, *x.shape[2:])
        if distribution == "rayleigh":
            noise = rayleigh_from_uniform(torch.rand(size, generator=g, device=x.device))
        else:
            noise = gamma_envelope(self._uniform(g, *gamma_shape, n), size, generator=g)
        amount = self._uniform(g, *strength, n) * self._chosen(g, prob, n)
        return apply_speckle(x, noise, amount, self.dynamic_range_db)

    # ------------------------------------------------------------------------------------------------------- call
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.ndim != 4 or batch.shape[1] != 1:
            raise ValueError(f"expected a gray batch (N, 1, H, W), got shape {tuple(batch.shape)!r}")
        # float32 throughout, as documented and as the CPU transforms compute: called under a bf16 autocast (inside
        # the training step's context), the blur's convolution ran in bf16 and moved pixels by up to 1/255
        if not torch.amp.is_autocast_available(batch.device.type):
            return self._augment(batch)
        with torch.autocast(batch.device.type, enabled=False):
            return self._augment(batch)

    def _augment(self, batch: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__` on a checked batch, autocast off."""
        # an empty batch is an empty result: the blur's kernel size (a max over the samples) raised torch's "max():
        # Expected reduction dim to be specified", naming neither the batch nor the augmentation
        if batch.shape[0] == 0:
            return torch.zeros(0, self.channels, self.size, self.size, device=batch.device)
        g = self._generator(batch.device)
        # by the batch's full scale: uint8 / 255, 16-bit (uint16, or int32 as PIL holds it) / 65535, floats in
        # [0, 255] / 255 (a float batch costs one host read for its range; the corpus cache's frames are uint8)
        x = batch.float() / full_scale(batch)
        n, _, height, width = x.shape
        boxes = self.crop_boxes(g, n, height, width)
        flip = self._chosen(g, self.flip_prob, n)
        angle = self._uniform(g, -self.rotate_range, self.rotate_range, n) * self._chosen(g, self.rotate_prob, n)
        grid, cover = self.sampling_grid(boxes, flip, angle, height, width)
        # "border" clamps source coordinates to the image, as F.interpolate (MONAI's Resize) does at the edges;
        # what a rotation brings in from outside the crop box is black, as RandRotated(padding_mode="zeros") leaves it
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False) * cover
        x = self._intensity(g, x)
        if self.normalize is None:
            return x.expand(-1, self.channels, -1, -1).contiguous()
        return normalize_batch(x, self.normalize, self.channels, self.mean, self.std)
