"""The GPU batch path matches the CPU transforms (run here on CPU tensors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandRotate, Resize
from monai.utils import set_determinism
from scipy.stats import ks_2samp

from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.transforms import (
    NormalizeUltrasound,
    RandAxialLateralBlur,
    RandDepthGain,
    RandDynamicRange,
    RandGammaGain,
    RandResizedCrop,
    RandSpeckle,
    UltrasoundBatchAugment,
)

DRAWS = 300
OFF = {"flip_prob": 0.0, "normalize": None, "channels": 1}


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """(1, 48, 40) float image in [0, 1] with black background, from the simulator."""
    bmode = simulate_frame(2, SimulatorConfig(size=48, geometry="curvilinear")).bmode[:, 4:44]
    return (bmode.astype(np.float32) / 255.0)[None]


def gpu_path(frame: np.ndarray, **kwargs) -> torch.Tensor:
    batch = torch.as_tensor(frame)[None].expand(DRAWS, -1, -1, -1)
    return UltrasoundBatchAugment(seed=0, **{**OFF, **kwargs})(batch)


def cpu_path(frame: np.ndarray, transform) -> torch.Tensor:
    transform.set_random_state(0)
    return torch.stack([torch.as_tensor(np.asarray(transform(frame))) for _ in range(DRAWS)])


def assert_same_distribution(gpu: torch.Tensor, cpu: torch.Tensor) -> None:
    """Per-image mean and standard deviation: same distributions (two-sample KS) across the draws."""
    for stat in (lambda x: x.mean(dim=(1, 2, 3)), lambda x: x.std(dim=(1, 2, 3))):
        a, b = stat(gpu.float()).numpy(), stat(cpu.float()).numpy()
        assert ks_2samp(a, b).pvalue > 1e-3, (a.mean(), b.mean(), a.std(), b.std())


PHYSICS = [
    ({"speckle_prob": 0.7, "speckle_strength": (0.2, 0.6)}, RandSpeckle(0.7, (0.2, 0.6))),
    ({"depth_gain_prob": 0.7}, RandDepthGain(0.7)),
    ({"dynamic_range_prob": 0.7}, RandDynamicRange(0.7)),
    ({"gamma_gain_prob": 0.7}, RandGammaGain(0.7)),
    ({"blur_prob": 0.7, "axial_sigma": (0.5, 2.0)}, RandAxialLateralBlur(0.7, (0.5, 2.0))),
]


@pytest.mark.parametrize("gpu_kwargs,cpu_transform", PHYSICS, ids=lambda v: type(v).__name__ if not isinstance(v, dict) else "")
def test_intensity_augmentations_match_cpu_statistics(frame, gpu_kwargs, cpu_transform):
    size = {"size": 48, "scale": (1.0, 1.0), "ratio": (40 / 48, 40 / 48)}  # the crop is the identity resize
    resized = Resize((48, 48), mode="bilinear", anti_aliasing=False)(frame).numpy()
    assert_same_distribution(gpu_path(frame, **size, **gpu_kwargs), cpu_path(resized, cpu_transform))


def test_crop_matches_cpu_statistics(frame):
    crop = {"scale": (0.3, 1.0), "keep_top": True}
    gpu = gpu_path(frame, size=24, **crop)
    cpu = cpu_path(frame, RandResizedCrop(24, **crop))
    assert_same_distribution(gpu, cpu)


def test_full_crop_equals_monai_resize_and_flip_mirrors(frame):
    kwargs = {"size": 32, "scale": (1.0, 1.0), "ratio": (40 / 48, 40 / 48)}
    out = UltrasoundBatchAugment(**{**OFF, **kwargs})(torch.as_tensor(frame)[None])
    expected = Resize((32, 32), mode="bilinear", anti_aliasing=False)(frame)
    torch.testing.assert_close(out[0], torch.as_tensor(np.asarray(expected)), atol=1e-5, rtol=0)
    flipped = UltrasoundBatchAugment(**{**OFF, **kwargs, "flip_prob": 1.0})(torch.as_tensor(frame)[None])
    torch.testing.assert_close(flipped, out.flip(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("box", ["whole image", "crop inside a larger image"])
def test_rotation_corners_are_black_as_the_cpu_recipe_leaves_them(box):
    """The ultrasound recipe crops, then rotates the crop with zero padding: its corners are black. The GPU path
    rotated within the image, so its corners held the image around the crop (or the edge pixels repeated)."""
    bright = np.ones((1, 32, 32), np.float32)
    image = bright if box == "whole image" else np.pad(bright, ((0, 0), (16, 16), (16, 16)), constant_values=1.0)
    crop = {"size": 32, "scale": (1.0, 1.0) if box == "whole image" else (0.25, 0.25), "ratio": (1.0, 1.0)}
    gpu = gpu_path(image, rotate_range=0.5, rotate_prob=1.0, **crop)
    cpu = cpu_path(bright, RandRotate(range_x=0.5, prob=1.0, padding_mode="zeros"))
    assert_same_distribution(gpu, cpu)
    assert gpu[:, :, 0, 0].min() == 0 and 0.85 < gpu.mean() < 0.97  # the corners' share of a 0.25 rad turn


def test_physics_in_the_recipe_order_blur_smooths_the_speckle():
    """The bundles' recipe blurs after speckle; the batch path blurred first, so its speckle came out ~5x stronger.
    Each augmentation alone matched, so only the two together show the order: on a flat frame, what varies is the
    speckle left after the blur."""
    flat = np.full((1, 32, 32), 0.5, np.float32)
    physics = {"speckle_prob": 1.0, "speckle_strength": (0.5, 0.5), "blur_prob": 1.0, "axial_sigma": (1.5, 1.5),
               "lateral_sigma": (1.5, 1.5)}
    gpu = gpu_path(flat, size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0), **physics)
    cpu = cpu_path(flat, Compose([RandSpeckle(1.0, (0.5, 0.5)), RandAxialLateralBlur(1.0, (1.5, 1.5), (1.5, 1.5))]))
    gpu_speckle, cpu_speckle = gpu.std(dim=(1, 2, 3)).mean().item(), cpu.std(dim=(1, 2, 3)).mean().item()
    assert gpu_speckle == pytest.approx(cpu_speckle, rel=0.15), (gpu_speckle, cpu_speckle)


@pytest.mark.parametrize("prob", [0.0, 0.5])
def test_rotates_a_share_of_samples_as_the_recipe_does(prob):
    """The ultrasound recipe turns half its samples (``RandRotated(prob=0.5)``); the batch path turned every one."""
    bright = np.ones((1, 32, 32), np.float32)
    gpu = gpu_path(bright, rotate_range=0.5, rotate_prob=prob, size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    cpu = cpu_path(bright, RandRotate(range_x=0.5, prob=prob, padding_mode="zeros"))
    assert_same_distribution(gpu, cpu)
    upright = (gpu[:, 0, 0, 0] == 1.0).float().mean().item()  # an unturned frame keeps its bright corner
    assert upright == 1.0 if prob == 0.0 else 0.4 < upright < 0.6


def test_without_a_seed_set_determinism_makes_it_repeatable(frame):
    """With seed=None the generator was seeded from the OS: runs differed after ``set_determinism``."""
    batch = torch.as_tensor(frame)[None].expand(4, -1, -1, -1)
    aug = {"size": 16, "rotate_range": 0.2, "speckle_prob": 1.0}
    runs = []
    for seed in (0, 0, 1):
        set_determinism(seed)
        runs.append(UltrasoundBatchAugment(**aug)(batch))
    set_determinism(None)
    torch.testing.assert_close(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])


def test_normalisation_matches_the_cpu_transform(frame):
    kwargs = {"size": 48, "scale": (1.0, 1.0), "ratio": (40 / 48, 40 / 48), "flip_prob": 0.0}
    resized = Resize((48, 48), mode="bilinear", anti_aliasing=False)(frame).numpy()
    for mode in ("imagenet", "zscore"):
        out = UltrasoundBatchAugment(normalize=mode, channels=3, **kwargs)(torch.as_tensor(frame)[None])[0]
        torch.testing.assert_close(out, torch.as_tensor(NormalizeUltrasound(mode, 3)(resized)), atol=1e-4, rtol=0)


def test_uint8_input_seeds_and_shapes(frame):
    u8 = torch.as_tensor(np.rint(frame * 255).astype(np.uint8))[None].expand(4, -1, -1, -1)
    aug = {"size": 16, "rotate_range": 0.2, "speckle_prob": 1.0, "blur_prob": 1.0, "depth_gain_prob": 1.0}
    a = UltrasoundBatchAugment(seed=3, **aug)(u8)
    b = UltrasoundBatchAugment(seed=3, **aug)(u8.float() / 255.0)
    assert a.shape == (4, 3, 16, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    c = UltrasoundBatchAugment(seed=4, **aug)(u8)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))])
def test_gamma_speckle_repeats_with_the_seed_and_leaves_the_default_generator_alone(frame, device):
    """Gamma speckle drew from torch's default generator: a seeded augmentation did not repeat, and it moved the
    default generator's state under the training code's feet."""
    batch = torch.as_tensor(frame)[None].expand(4, -1, -1, -1).to(device)
    aug = {"size": 16, "speckle_prob": 1.0, "speckle_distribution": "gamma", "normalize": None}
    torch.manual_seed(11)
    first = UltrasoundBatchAugment(seed=3, **aug)(batch)
    after_first = torch.rand(3, device=device)
    torch.manual_seed(12)
    again = UltrasoundBatchAugment(seed=3, **aug)(batch)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    torch.manual_seed(11)
    torch.testing.assert_close(torch.rand(3, device=device), after_first, rtol=0, atol=0)  # as if never drawn from
    assert not torch.equal(UltrasoundBatchAugment(seed=4, **aug)(batch), first)


@pytest.mark.parametrize("dtype,peak", [(torch.int32, 65535), (torch.uint16, 65535), (torch.int16, 32767)])
def test_16bit_batches_are_scaled_by_their_type_as_uint8_is(frame, dtype, peak):
    """int32 is how PIL / MONAI's PILReader hold 16-bit PNGs; before, such a batch went in unscaled and clipped white."""
    u8 = np.rint(frame * 255).astype(np.int64)
    deep = torch.as_tensor(np.rint(u8 / 255 * peak)).to(dtype)[None].expand(4, -1, -1, -1)
    aug = {"size": 16, "speckle_prob": 1.0, "depth_gain_prob": 1.0, "normalize": None}
    out = UltrasoundBatchAugment(seed=3, **aug)(deep)
    reference = UltrasoundBatchAugment(seed=3, **aug)(torch.as_tensor(u8).to(torch.uint8)[None].expand(4, -1, -1, -1))
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kwargs,message", [
    ({"size": 0}, "size must be positive, got 0"),
    ({"size": 8, "scale": (0.0, 1.0)}, r"scale must satisfy 0 < low <= high <= 1, got \(0.0, 1.0\)"),
    ({"size": 8, "normalize": "minmax"}, "normalize must be one of"),
    ({"size": 8, "blur_prob": 2.0}, r"blur_prob must be in \[0, 1\], got 2.0"),
    ({"size": 8, "speckle_strength": (0.5, 0.1)}, r"speckle_strength must be an increasing pair >= 0.0, got \(0.5, 0.1\)"),
    ({"size": 8, "gamma_shape": (0.0, 1.0)}, r"gamma_shape must be an increasing pair >= 0.001, got \(0.0, 1.0\)"),
    ({"size": 8, "tgc_nodes": 0}, "tgc_nodes must be at least 1, got 0"),
    ({"size": 8, "attenuation_db": (8.0, -8.0)}, r"attenuation_db must be an increasing pair, got \(8.0, -8.0\)"),
    ({"size": 8, "range_db": (0.0, 10.0)}, r"range_db must be an increasing pair >= 1.0, got \(0.0, 10.0\)"),
    ({"size": 8, "gamma": (0.0, 1.0)}, r"gamma must be an increasing pair >= 0.001, got \(0.0, 1.0\)"),
    ({"size": 8, "axial_sigma": (-1.0, 1.0)}, r"axial_sigma must be an increasing pair >= 0.0, got \(-1.0, 1.0\)"),
    ({"size": 8, "rotate_range": -0.2}, "rotate_range must be >= 0, got -0.2"),
    ({"size": 8, "rotate_prob": 1.5}, r"rotate_prob must be in \[0, 1\], got 1.5"),
    ({"size": 8, "normalize": "corpus"}, "mode 'corpus' needs mean and a positive std, got mean=None, std=None"),
    ({"size": 8, "channels": 2}, "channels must be 1 or 3, got 2"),
    ({"size": 8, "dynamic_range_db": 0.0}, "dynamic_range_db must be positive, got 0.0"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UltrasoundBatchAugment(**kwargs)
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\)"):
        UltrasoundBatchAugment(8)(torch.zeros(2, 3, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_gpu(frame):
    batch = torch.as_tensor(frame)[None].expand(8, -1, -1, -1).cuda()
    out = UltrasoundBatchAugment(16, speckle_prob=1.0, blur_prob=1.0, seed=0)(batch)
    assert out.is_cuda and out.shape == (8, 3, 16, 16)


@pytest.mark.parametrize("make", [
    lambda: (lambda f: UltrasoundBatchAugment(32, seed=0, **{**OFF, "speckle_prob": 1.0, "depth_gain_prob": 1.0})(
        torch.as_tensor(f)[None])),
    lambda: (lambda f: RandSpeckle(prob=1.0, strength=(0.5, 0.5)).set_random_state(1)(f)),
    lambda: (lambda f: RandGammaGain(prob=1.0).set_random_state(1)(f)),
    lambda: NormalizeUltrasound("imagenet", 3),
], ids=["batch augment", "speckle", "gamma", "normalise"])
def test_a_float_frame_in_0_255_is_read_as_the_same_uint8_frame_everywhere(frame, make) -> None:
    """``ScaleIntensityByDtype`` read float [0, 255] frames (MONAI ``LoadImage``'s default float32) as 0-255 and every
    other transform as [0, 1]: normalised values came out near 900 instead of 1.7."""
    u8 = np.rint(frame * 255).astype(np.uint8)
    from_u8 = np.asarray(make()(u8), np.float64)
    from_float = np.asarray(make()(u8.astype(np.float32)), np.float64)
    if from_u8.max() > 1.5:  # an image-in, image-out transform keeps each input's range: bring them to [0, 1]
        from_u8, from_float = from_u8 / 255, from_float / 255
    np.testing.assert_allclose(from_float, from_u8, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("physics", [
    {"blur_prob": 1.0, "axial_sigma": (1.0, 1.0), "lateral_sigma": (1.0, 1.0)},
    {"speckle_prob": 1.0, "depth_gain_prob": 1.0, "dynamic_range_prob": 1.0, "gamma_gain_prob": 1.0, "blur_prob": 1.0},
], ids=["blur", "all physics"])
def test_a_bf16_autocast_around_the_call_does_not_lower_its_precision(frame, physics):
    """Called inside a training step's bf16 autocast, the blur's convolution ran in bf16: pixels moved by up to 1/255
    (0.0042 measured) from what the CPU transforms compute. The same ops in float32 either way: equal to 1e-6."""
    batch = torch.as_tensor(frame)[None].expand(4, -1, -1, -1)
    aug = {"size": 24, "rotate_range": 0.2, **OFF, **physics}
    plain = UltrasoundBatchAugment(seed=5, **aug)(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = UltrasoundBatchAugment(seed=5, **aug)(batch)
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, plain, atol=1e-6, rtol=0)


def _as_bf16(f):
    return torch.as_tensor(f).bfloat16()


#: (input, its own rounding on the [0, 1] scale): bf16's 2^-9 relative (values below 1: under 2^-9) and float16's
#: 2^-11, which the identity crop passes through; integer types and uint8 levels in bf16 [0, 255] are exact.
LAYOUTS = {
    "bfloat16 [0, 1]": (lambda f: _as_bf16(f)[None], 2**-9),
    "bfloat16 [0, 255]": (lambda f: _as_bf16(np.rint(f * 255))[None], 0.0),
    "float16 [0, 1]": (lambda f: torch.as_tensor(f).half()[None], 2**-11),
    "uint8": (lambda f: torch.as_tensor(np.rint(f * 255).astype(np.uint8))[None], 0.0),
    "uint16": (lambda f: torch.as_tensor((np.rint(f * 255) * 257).astype(np.uint16))[None], 0.0),
    "channels last": (lambda f: torch.as_tensor(f)[None].contiguous(memory_format=torch.channels_last), 0.0),
    "strided view": (lambda f: torch.as_tensor(np.repeat(np.repeat(f, 2, 1), 2, 2))[None, :, ::2, ::2], 0.0),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_pixel_type_and_layout_matches_the_cpu_transforms(frame, layout):
    """A batch of one in each type and memory layout against the CPU recipe it mirrors (MONAI's ``Resize``, then
    :class:`NormalizeUltrasound`) on the same frame as float32: the identity crop, so only the input differs."""
    make, tolerance = LAYOUTS[layout]
    u8_frame = np.rint(frame * 255).astype(np.float32) / 255  # every type holds this frame (uint8 levels)
    batch = make(u8_frame)
    kwargs = {"size": 48, "scale": (1.0, 1.0), "ratio": (40 / 48, 40 / 48), "flip_prob": 0.0}
    out = UltrasoundBatchAugment(normalize=None, channels=1, **kwargs)(batch)[0]
    expected = Resize((48, 48), mode="bilinear", anti_aliasing=False)(u8_frame)
    # plus 1e-5: grid_sample and F.interpolate round differently in float32 (as in the full-crop test above)
    torch.testing.assert_close(out, torch.as_tensor(np.asarray(expected)), atol=tolerance + 1e-5, rtol=0)


@pytest.mark.parametrize("normalize", ["imagenet", "zscore", None])
def test_an_empty_batch_gives_an_empty_batch(normalize):
    """An empty batch (every frame of it filtered out upstream) raised torch's "max(): Expected reduction dim to be specified"
    from the blur's kernel size, naming neither the batch nor the augmentation."""
    aug = UltrasoundBatchAugment(8, blur_prob=1.0, speckle_prob=1.0, normalize=normalize, seed=0)
    out = aug(torch.zeros(0, 1, 16, 16, dtype=torch.uint8))
    assert out.shape == (0, 3, 8, 8) and out.dtype == torch.float32
