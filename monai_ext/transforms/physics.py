"""Augmentations grounded in ultrasound physics, on log-compressed B-mode images scaled to [0, 1].

A displayed B-mode value ``v`` maps to decibels as ``db = (v - 1) * D`` for a dynamic range of ``D`` dB (white is
0 dB). In that domain the physics is additive: multiplicative speckle on the envelope adds ``20 log10(n)`` dB,
attenuation and time-gain compensation add a depth-dependent number of dB, a different dynamic range rescales the
dB axis. The functional core below works on batches (N, C, H, W) with one parameter per sample, so the same code
serves the per-sample array/dict transforms (parameters drawn from ``self.R``) and the GPU batch path
(:mod:`monai_ext.transforms.gpu`, parameters drawn on the device).

Black pixels (outside the field of view) stay black: every function leaves exact zeros unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from monai_ext.transforms.intensity import as_pair, full_scale, is_float_dtype

#: Dynamic range assumed for images whose compression is unknown (typical scanner presets span 40-80 dB).
NOMINAL_DYNAMIC_RANGE_DB = 60.0
SPECKLE_DISTRIBUTIONS = ("rayleigh", "gamma")


def _per_sample(value: torch.Tensor | float, img: torch.Tensor) -> torch.Tensor:
    """(N,) parameter or scalar -> (N, 1, 1, 1) on ``img``'s device and dtype."""
    return torch.as_tensor(value, dtype=img.dtype, device=img.device).reshape(-1, 1, 1, 1)


def _keep_background(out: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    return torch.where(img > 0, out.clamp(0.0, 1.0), torch.zeros_like(out))


# ------------------------------------------------------------------------------------------------ functional core
def apply_speckle(img: torch.Tensor, noise: torch.Tensor, strength: torch.Tensor | float,
                  dynamic_range_db: float = NOMINAL_DYNAMIC_RANGE_DB) -> torch.Tensor:
    """Multiply the envelope by ``noise ** strength``: (N, C, H, W), noise (N, 1, H, W) positive with E[n^2] = 1."""
    db = 20.0 * torch.log10(noise.clamp_min(1e-6)) * _per_sample(strength, img)
    return _keep_background(img + db / dynamic_range_db, img)


def apply_depth_gain(img: torch.Tensor, gain_db: torch.Tensor,
                     dynamic_range_db: float = NOMINAL_DYNAMIC_RANGE_DB) -> torch.Tensor:
    """Add a gain curve over depth: img (N, C, H, W), gain_db (N, H) in dB (row 0 is the probe)."""
    return _keep_background(img + gain_db[:, None, :, None].to(img) / dynamic_range_db, img)


def depth_gain_curve(attenuation_db: torch.Tensor, tgc_db: torch.Tensor, height: int) -> torch.Tensor:
    """Gain over depth (N, H) in dB: a linear attenuation error reaching ``attenuation_db`` (N,) at the bottom, plus
    a time-gain curve through the node values ``tgc_db`` (N, K) spread evenly from top to bottom."""
    depth = torch.linspace(0.0, 1.0, height, device=tgc_db.device, dtype=tgc_db.dtype)
    nodes = tgc_db.shape[1]
    position = depth * (nodes - 1)
    low = position.floor().long().clamp(max=nodes - 2) if nodes > 1 else torch.zeros_like(depth, dtype=torch.long)
    frac = position - low
    high = (low + 1).clamp(max=nodes - 1)
    tgc = tgc_db[:, low] * (1 - frac) + tgc_db[:, high] * frac
    return attenuation_db.reshape(-1, 1).to(tgc) * depth + tgc


def apply_dynamic_range(img: torch.Tensor, new_range_db: torch.Tensor | float,
                        dynamic_range_db: float = NOMINAL_DYNAMIC_RANGE_DB) -> torch.Tensor:
    """Re-compress from ``dynamic_range_db`` to ``new_range_db`` (N,): white stays white, shadows deepen or lift."""
    db = (img - 1.0) * dynamic_range_db
    return _keep_background(1.0 + db / _per_sample(new_range_db, img), img)


def apply_gamma_gain(img: torch.Tensor, gamma: torch.Tensor | float, gain: torch.Tensor | float) -> torch.Tensor:
    """``gain * img ** gamma`` per sample (display gamma and overall gain knobs): img (N, C, H, W), ``gamma`` and
    ``gain`` (N,) or scalars; returns (N, C, H, W)."""
    return _keep_background(_per_sample(gain, img) * img.clamp_min(0.0) ** _per_sample(gamma, img), img)


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalised 1-D Gaussians (N, 2 * radius + 1); sigma 0 gives the identity kernel."""
    x = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    s = sigma.reshape(-1, 1)
    weights = torch.exp(-0.5 * (x / s.clamp_min(1e-3)) ** 2)
    weights = torch.where(s > 1e-3, weights, (x == 0).to(weights).expand_as(weights))
    return weights / weights.sum(1, keepdim=True)


def apply_axial_lateral_blur(img: torch.Tensor, sigma_axial: torch.Tensor, sigma_lateral: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur, ``sigma_axial`` (N,) along rows' direction (depth) and ``sigma_lateral`` (N,) across,
    modelling a longer pulse or a wider beam. Reflect padding (replicate along an axis one pixel long); black
    background and NaN pixels (as 0) preserved, NaN not spread."""
    n, c, h, w = img.shape
    # 3 sigma each way, cut per axis to what reflect padding can mirror (pad < size), both sigmas in one host read.
    # A single radius cut to the shorter side cut the long axis' Gaussian as well: an axial sigma of 1.5 on an image
    # 5 pixels wide blurred depth with 5 taps (0.07 off a Gaussian's result on values in [0, 1])
    top_axial, top_lateral = torch.stack([sigma_axial.max(), sigma_lateral.max()]).tolist()
    radius_axial, radius_lateral = (max(1, min(math.ceil(3.0 * top), size - 1))
                                    for top, size in ((top_axial, h), (top_lateral, w)))
    ka = gaussian_kernels(sigma_axial.to(img), radius_axial).repeat_interleave(c, 0)
    kl = gaussian_kernels(sigma_lateral.to(img), radius_lateral).repeat_interleave(c, 0)
    # replicate padding along an axis one pixel long (reflect refuses it), and no NaN into the convolution: one NaN
    # pixel would spread to its whole neighbourhood, where the other physics transforms zero that pixel alone
    modes = ("replicate" if h < 2 else "reflect", "replicate" if w < 2 else "reflect")
    x = torch.nan_to_num(img, nan=0.0).reshape(1, n * c, h, w)
    x = F.conv2d(F.pad(x, (0, 0, radius_axial, radius_axial), mode=modes[0]), ka[:, None, :, None], groups=n * c)
    x = F.conv2d(F.pad(x, (radius_lateral, radius_lateral, 0, 0), mode=modes[1]), kl[:, None, None, :], groups=n * c)
    return _keep_background(x.reshape(n, c, h, w), img)


def rayleigh_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """Rayleigh envelope noise with E[n^2] = 1 from U(0, 1) samples, by inverting the CDF ``1 - exp(-n^2)``."""
    return torch.sqrt(-torch.log1p(-u.clamp(0.0, 1.0 - 1e-7)))


def gamma_envelope(shape_k: torch.Tensor, size: Sequence[int],
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Envelope noise whose intensity is Gamma(k, 1/k) (mean 1): the square root of the draw.

    Args:
        shape_k: (N,) shape parameters on the target device.
        size: (N, 1, H, W).
        generator: where the randomness comes from (a generator on the target device); None: torch's default
            generator of that device.

    Returns:
        (N, 1, H, W) float noise of mean square 1.
    """
    k = shape_k.reshape(-1, 1, 1, 1).expand(*size)
    if generator is None:
        return torch._standard_gamma(k).div(k).sqrt()
    # torch's Gamma sampler takes no generator: seed the device's default generator from ours for this one draw,
    # then give it back its state, so a seeded augmentation repeats and other users of the default are undisturbed
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    # CUDA draws on its device; another device (MPS) draws on the CPU, whose default generator can be seeded alone
    on = k.device if k.device.type == "cuda" else torch.device("cpu")
    with _default_generator_seeded(on, seed):
        draw = torch._standard_gamma(k.to(on))
    return draw.to(k.device).div(k).sqrt()


@contextmanager
def _default_generator_seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Seed the default generator of ``device`` (the CPU or one CUDA device, never the others) for the block, then
    restore its state."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        generator = torch.cuda.default_generators[index]
    else:
        generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


# ------------------------------------------------------------------------------------------- array / dict classes
def check_range(name: str, value: Sequence[float], low: float | None = None) -> tuple[float, float]:
    """``value`` as a (low, high) pair of floats; ``ValueError`` quoting it unless a pair (:func:`as_pair`) with
    low <= high (and >= ``low``)."""
    lo, hi = as_pair(name, value)
    if lo > hi or (low is not None and lo < low):
        raise ValueError(f"{name} must be an increasing pair{'' if low is None else f' >= {low}'}, got {tuple(value)!r}")
    return lo, hi


def check_dynamic_range(dynamic_range_db: float) -> float:
    """The assumed dynamic range divides every dB value: positive, or ``ValueError`` quoting it."""
    if not dynamic_range_db > 0:
        raise ValueError(f"dynamic_range_db must be positive, got {dynamic_range_db!r}")
    return dynamic_range_db


def check_channel_first(img: Any, name: str = "the image") -> None:
    """Refuse anything but one channel-first 2-D image (C, H, W), with a ``ValueError`` quoting its shape.

    The draws are shaped from ``img.shape[1:]``, so another layout did not fail but came out wrong: an (H, W) frame
    got one speckle row repeated down the image (vertical stripes) and came back (1, H, W); a batch (N, C, H, W)
    got its depth-gain curve drawn over the channel axis, one flat gain instead of a ramp over depth.

    Args:
        img: the image, numpy or tensor; only its shape is read.
        name: how the message names it (``key 'image'`` for a dict transform's key).

    Raises:
        ValueError: quoting the shape, where it is not 3-D.
    """
    shape = tuple(int(s) for s in img.shape)
    if len(shape) != 3:
        raise ValueError(f"{name} must be one channel-first 2-D image (C, H, W), got shape {shape!r}: add the channel "
                         "with EnsureChannelFirst(d), and augment a batch (N, C, H, W) one sample at a time or with "
                         "monai_ext.transforms.gpu.UltrasoundBatchAugment")


class _RandUltrasound(RandomizableTransform):
    """Base: (C, H, W) image (numpy or tensor), integer, or float in [0, 1] or [0, 255] (taken over its
    :func:`full_scale`) -> same type, device, dtype and range."""

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    _drawn = False  # whether randomize() has run: its draws exist
    _drawn_shape: tuple[int, ...] = ()  # the (H, W) the draws were made for

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        super().randomize(None)
        self._drawn_shape = tuple(int(s) for s in spatial_shape)
        if self._do_transform:
            self._draw(self._drawn_shape)
        self._drawn = True

    def _draw(self, spatial_shape: tuple[int, int]) -> None:
        raise NotImplementedError

    def _fits(self, spatial_shape: tuple[int, ...]) -> bool:
        """Whether the current draws apply to an image of this (H, W): any, unless they are shaped (noise, curves)."""
        return True

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        check_channel_first(img)
        if randomize:
            self.randomize(img.shape[1:])
        elif not self._drawn:  # an AttributeError on a draw's private name said nothing of the cause
            raise RuntimeError("call randomize() before applying the transform with randomize=False")
        if not self._do_transform:
            return img
        spatial = tuple(int(s) for s in img.shape[1:])
        if not self._fits(spatial):  # torch broadcast a (1, W) image over the (H, W) noise, or failed naming no cause
            raise ValueError(f"{type(self).__name__} drew for images of spatial shape {self._drawn_shape!r}, got an "
                             f"image of shape {tuple(img.shape)!r}: a dict transform draws once from its first key, "
                             "so every key must have that key's height and width")
        t = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        # the physics works on [0, 1]: integer frames (and floats in [0, 255]) are scaled there and back, not clamped
        is_float = is_float_dtype(img.dtype)
        peak = full_scale(img)
        out = self._apply(t[None] / peak)[0] * peak
        return convert_to_dst_type(out if is_float else out.round(), img, dtype=img.dtype)[0]


class RandSpeckle(_RandUltrasound):
    """Multiplicative speckle on the envelope: Rayleigh (fully developed) or Gamma (Nakagami-like) noise.

    Args:
        prob: probability of applying.
        strength: range of the exponent on the noise (0 = none, 1 = a full extra speckle realisation).
        distribution: "rayleigh" or "gamma".
        gamma_shape: range of the Gamma shape k (smaller = heavier speckle); used with "gamma".
        dynamic_range_db: assumed dynamic range of the input.
    """

    def __init__(self, prob: float = 0.5, strength: Sequence[float] = (0.0, 0.5), distribution: str = "rayleigh",
                 gamma_shape: Sequence[float] = (1.0, 4.0), dynamic_range_db: float = NOMINAL_DYNAMIC_RANGE_DB) -> None:
        super().__init__(prob)
        if distribution not in SPECKLE_DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {SPECKLE_DISTRIBUTIONS}, got {distribution!r}")
        self.strength = check_range("strength", strength, 0.0)
        self.gamma_shape = check_range("gamma_shape", gamma_shape, 1e-3)
        self.distribution = distribution
        self.dynamic_range_db = check_dynamic_range(dynamic_range_db)

    def _draw(self, spatial_shape: tuple[int, int]) -> None:
        self._strength = self.R.uniform(*self.strength)
        size = (1, 1, *spatial_shape)
        # Noise fields come from self.R so that set_random_state makes them reproducible.
        if self.distribution == "rayleigh":
            self._noise = rayleigh_from_uniform(torch.from_numpy(self.R.uniform(size=size).astype(np.float32)))
        else:
            k = self.R.uniform(*self.gamma_shape)
            self._noise = torch.from_numpy(np.sqrt(self.R.gamma(k, 1.0 / k, size=size)).astype(np.float32))

    def _fits(self, spatial_shape: tuple[int, ...]) -> bool:
        return spatial_shape == self._drawn_shape  # one noise value per pixel

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return apply_speckle(img, self._noise.to(img.device), self._strength, self.dynamic_range_db)


class RandDepthGain(_RandUltrasound):
    """Depth-dependent gain: an attenuation error (linear in depth) plus a random time-gain curve.

    Args:
        prob: probability of applying.
        attenuation_db: range of the gain error at the bottom of the image, in dB.
        tgc_db: range of each time-gain node, in dB.
        nodes: number of time-gain nodes (slider positions) from top to bottom.
        dynamic_range_db: assumed dynamic range of the input.
    """

    def __init__(self, prob: float = 0.5, attenuation_db: Sequence[float] = (-8.0, 8.0),
                 tgc_db: Sequence[float] = (-3.0, 3.0), nodes: int = 4,
                 dynamic_range_db: float = NOMINAL_DYNAMIC_RANGE_DB) -> None:
        super().__init__(prob)
        if nodes < 1:
            raise ValueError(f"nodes must be at least 1, got {nodes!r}")
        self.attenuation_db = check_range("attenuation_db", attenuation_db)
        self.tgc_db = check_range("tgc_db", tgc_db)
        self.nodes = nodes
        self.dynamic_range_db = check_dynamic_range(dynamic_range_db)

    def _draw(self, spatial_shape: tuple[int, int]) -> None:
        attenuation = torch.tensor([self.R.uniform(*self.attenuation_db)], dtype=torch.float32)
        tgc = torch.from_numpy(self.R.uniform(*self.tgc_db, size=(1, self.nodes)).astype(np.float32))
        self._curve = depth_gain_curve(attenuation, tgc, spatial_shape[0])

    def _fits(self, spatial_shape: tuple[int, ...]) -> bool:
        return spatial_shape[0] == self._drawn_shape[0]  # one gain per row: any width

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return apply_depth_gain(img, self._curve.to(img.device), self.dynamic_range_db)


class RandDynamicRange(_RandUltrasound):
    """Re-compress the image as if displayed with another dynamic range (dB), drawn from ``range_db``."""

    def __init__(self, prob: float = 0.5, range_db: Sequence[float] = (40.0, 80.0),
                 dynamic_range_db: float = NOMINAL_DYNAMIC_RANGE_DB) -> None:
        super().__init__(prob)
        self.range_db = check_range("range_db", range_db, 1.0)
        self.dynamic_range_db = check_dynamic_range(dynamic_range_db)

    def _draw(self, spatial_shape: tuple[int, int]) -> None:
        self._new = self.R.uniform(*self.range_db)

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return apply_dynamic_range(img, self._new, self.dynamic_range_db)


class RandGammaGain(_RandUltrasound):
    """``gain * img ** gamma`` with gamma drawn log-uniformly from ``gamma`` and gain uniformly from ``gain``."""

    def __init__(self, prob: float = 0.5, gamma: Sequence[float] = (0.7, 1.4), gain: Sequence[float] = (0.8, 1.25)) -> None:
        super().__init__(prob)
        self.gamma = check_range("gamma", gamma, 1e-3)
        self.gain = check_range("gain", gain, 0.0)

    def _draw(self, spatial_shape: tuple[int, int]) -> None:
        self._gamma = math.exp(self.R.uniform(math.log(self.gamma[0]), math.log(self.gamma[1])))
        self._gain = self.R.uniform(*self.gain)

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return apply_gamma_gain(img, self._gamma, self._gain)


class RandAxialLateralBlur(_RandUltrasound):
    """Gaussian blur with independent axial (depth) and lateral sigmas in pixels: a longer pulse, a wider beam."""

    def __init__(self, prob: float = 0.5, axial_sigma: Sequence[float] = (0.0, 1.5),
                 lateral_sigma: Sequence[float] = (0.0, 1.5)) -> None:
        super().__init__(prob)
        self.axial_sigma = check_range("axial_sigma", axial_sigma, 0.0)
        self.lateral_sigma = check_range("lateral_sigma", lateral_sigma, 0.0)

    def _draw(self, spatial_shape: tuple[int, int]) -> None:
        self._sigmas = (self.R.uniform(*self.axial_sigma), self.R.uniform(*self.lateral_sigma))

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        axial, lateral = (torch.tensor([s], dtype=torch.float32) for s in self._sigmas)
        return apply_axial_lateral_blur(img, axial, lateral)


class _RandUltrasoundd(RandomizableTransform, MapTransform):
    """Dictionary base: one draw per sample (from the first key's shape) applied to every key."""

    backend = _RandUltrasound.backend

    transform_class: type[_RandUltrasound]

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs: Any) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.transform = self.transform_class(**kwargs)
        RandomizableTransform.__init__(self, self.transform.prob)

    # the array transform draws whether to apply: ``prob`` is its, read and set, so that setting it here (an
    # augmentation turned off for validation, or on a schedule) takes effect, as on MONAI's dict transforms (it was
    # a copy made at construction, and setting it changed nothing)
    @property
    def prob(self) -> float:
        return self.transform.prob

    @prob.setter
    def prob(self, value: float) -> None:
        if hasattr(self, "transform"):  # RandomizableTransform.__init__ sets it before the array transform exists
            self.transform.prob = min(max(value, 0.0), 1.0)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> _RandUltrasoundd:
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = self.first_key(d)
        if first == ():
            return d
        for key in self.key_iterator(d):  # before the draw, which is shaped from the first key
            check_channel_first(d[key], f"key {key!r}")
        self.transform.randomize(d[first].shape[1:])
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], randomize=False)
        return d


class RandSpeckled(_RandUltrasoundd):
    """Dictionary version of :class:`RandSpeckle` (keyword arguments as there)."""

    transform_class = RandSpeckle


class RandDepthGaind(_RandUltrasoundd):
    """Dictionary version of :class:`RandDepthGain` (keyword arguments as there)."""

    transform_class = RandDepthGain


class RandDynamicRanged(_RandUltrasoundd):
    """Dictionary version of :class:`RandDynamicRange` (keyword arguments as there)."""

    transform_class = RandDynamicRange


class RandGammaGaind(_RandUltrasoundd):
    """Dictionary version of :class:`RandGammaGain` (keyword arguments as there)."""

    transform_class = RandGammaGain


class RandAxialLateralBlurd(_RandUltrasoundd):
    """Dictionary version of :class:`RandAxialLateralBlur` (keyword arguments as there)."""

    transform_class = RandAxialLateralBlur
