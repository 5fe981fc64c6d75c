"""De-annotation and field of view on the pixel formats a scanner archive holds: 16-bit PNGs (uint16, or int32 as
PIL and MONAI's ``PILReader`` store them), floats in [0, 255], NaN pixels, gray + alpha and RGBA, channel-last.

The reference is the same frame as 8-bit: every format must give the same result, in the input's own value range.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from PIL import Image

from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.transforms import (
    Deannotate,
    Deannotated,
    DopplerToGray,
    DopplerToGrayd,
    FieldOfViewMask,
    FieldOfViewMaskd,
    ScaleIntensityByDtyped,
)


def screen() -> np.ndarray:
    """(3, 128, 128) uint8 screen capture: gray B-mode, colour bar, text and calipers."""
    return np.moveaxis(simulate_frame(11, SimulatorConfig(size=128, screen_capture=True)).screen, -1, 0).copy()


def gray_screen() -> np.ndarray:
    """(1, 128, 128) uint8: the screen's first channel (gray everywhere but the overlays)."""
    return screen()[:1].copy()


# Each case: (name, 8-bit source, the source in the awkward format, how an 8-bit result maps to that format's range)
def as_uint16(u8: np.ndarray) -> np.ndarray:
    return u8.astype(np.uint16) * 257


def as_int32_metatensor(u8: np.ndarray) -> MetaTensor:
    return MetaTensor(torch.as_tensor(u8.astype(np.int32) * 257))


def as_float255(u8: np.ndarray) -> np.ndarray:
    return u8.astype(np.float32)


def as_float_with_nan(u8: np.ndarray) -> np.ndarray:
    img = u8.astype(np.float32) / 255.0
    img[:, 0, 0] = np.nan  # a corner pixel: background, black in the 8-bit reference
    return img


def with_alpha(u8: np.ndarray) -> np.ndarray:
    return np.concatenate([u8, np.full_like(u8[:1], 255)])


CASES = [
    ("uint16", screen, as_uint16, lambda out: out.astype(np.float64) * 257),
    ("int32 MetaTensor (16-bit PNG via PILReader)", screen, as_int32_metatensor, lambda out: out.astype(np.float64) * 257),
    ("float in [0, 255]", screen, as_float255, lambda out: out.astype(np.float64)),
    ("float in [0, 1] with NaN", screen, as_float_with_nan, lambda out: out.astype(np.float64) / 255),
    ("gray + alpha (2, H, W)", gray_screen, with_alpha, lambda out: out.astype(np.float64)),
    ("RGBA (4, H, W)", screen, with_alpha, lambda out: out.astype(np.float64)),
    ("channel-last (H, W, 3)", screen, lambda u8: np.moveaxis(u8, 0, -1).copy(), lambda out: out.astype(np.float64)),
]


@pytest.mark.parametrize("name,source,convert,to_range", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("transform", [Deannotate(), DopplerToGray("inpaint"), DopplerToGray("mask")],
                         ids=["Deannotate", "DopplerToGray-inpaint", "DopplerToGray-mask"])
def test_every_pixel_format_gives_the_8bit_result_in_its_own_range(name, source, convert, to_range, transform):
    u8 = source()
    img = convert(u8)
    expected = to_range(np.asarray(transform(u8)))
    out = transform(img)
    assert type(out) is type(img) and out.dtype == img.dtype, name
    assert tuple(out.shape) == (1, 128, 128), name
    values = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out
    np.testing.assert_allclose(values.astype(np.float64), expected, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name,source,convert,to_range", CASES, ids=[c[0] for c in CASES])
def test_every_pixel_format_gives_the_8bit_field_of_view(name, source, convert, to_range):
    u8 = source()
    np.testing.assert_array_equal(np.asarray(FieldOfViewMask()(convert(u8))), np.asarray(FieldOfViewMask()(u8)),
                                  err_msg=name)


def test_16bit_png_through_the_pretraining_bundle_reader_matches_the_8bit_png(tmp_path):
    """The bundle's reading (LoadImaged with PILReader, dtype kept) then Deannotated then ScaleIntensityByDtyped:
    a 16-bit PNG of a frame gives what the 8-bit PNG of the same frame gives."""
    gray = gray_screen()[0]
    Image.fromarray(gray).save(tmp_path / "frame8.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "frame16.png")
    pipeline = Compose([
        LoadImaged("image", reader="PILReader", reverse_indexing=False, dtype=None, image_only=True),
        EnsureChannelFirstd("image"),
        Deannotated("image"),
        ScaleIntensityByDtyped("image"),
    ])
    eight = pipeline({"image": str(tmp_path / "frame8.png")})["image"]
    sixteen = pipeline({"image": str(tmp_path / "frame16.png")})["image"]
    assert float(eight.max()) > 0.5
    torch.testing.assert_close(torch.as_tensor(sixteen), torch.as_tensor(eight), atol=1e-6, rtol=0)


@pytest.mark.parametrize("overshoot", [1.0005, 1.02, 1.2])
def test_float_frame_overshooting_one_is_still_read_as_unit_range(overshoot):
    """Bicubic resizing or added noise leaves a [0, 1] frame slightly above 1. Before, any value above 1 made the
    whole frame be read as [0, 255]: it became black and de-annotation returned nothing."""
    unit = screen().astype(np.float32) / 255.0
    over = unit.copy()
    over[:, 64, 64] = overshoot  # one pixel inside the field of view
    expected = np.asarray(Deannotate()(np.clip(over, 0.0, 1.0)))
    np.testing.assert_allclose(np.asarray(Deannotate()(over)), expected, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(FieldOfViewMask()(over)), np.asarray(FieldOfViewMask()(unit)))


@pytest.mark.parametrize("transform", [Deannotate(), DopplerToGray("inpaint"), DopplerToGray("mask")],
                         ids=["Deannotate", "DopplerToGray-inpaint", "DopplerToGray-mask"])
def test_16bit_pixels_the_repair_leaves_keep_their_full_precision(transform):
    """Every pixel of a 16-bit or float frame was quantised to 256 levels, repaired or not (2222 levels in, 129
    out). Now only the repaired pixels take the 8-bit result; the others keep the input's own gray."""
    from monai_ext.transforms import ToGrayscale

    u8 = screen()
    u8[:, 60:70, 50:64] = np.array([200, 40, 40], np.uint8)[:, None, None]  # colour flow inside the view
    fine = np.random.default_rng(3).integers(0, 128, u8.shape[1:], dtype=np.uint16)  # below half an 8-bit level
    # the same fine offset on R, G and B (gray stays gray), none on full white (it would wrap)
    u16 = np.minimum(u8.astype(np.int32) * 257 + fine[None], 65535).astype(np.uint16)
    out8, out16 = np.asarray(transform(u8))[0], np.asarray(transform(u16))[0]
    gray8, gray16 = np.asarray(ToGrayscale()(u8))[0], np.asarray(ToGrayscale()(u16))[0]
    kept = (out8 == gray8) & (out8 > 0)
    assert kept.mean() > 0.3 and (out8 != gray8).any()  # the screen has marks and colour to repair
    np.testing.assert_array_equal(out16[kept], gray16[kept])
    np.testing.assert_array_equal(out16[~kept], out8[~kept].astype(np.uint16) * 257)
    assert len(np.unique(out16)) > 1000


@pytest.mark.parametrize("shape", [(1, 80, 1), (1, 1, 80), (3, 4, 4), (3, 2, 60)])
@pytest.mark.parametrize("transform", [Deannotate(), DopplerToGray("inpaint"), FieldOfViewMask()],
                         ids=["Deannotate", "DopplerToGray", "FieldOfViewMask"])
def test_narrow_channel_first_images_keep_their_layout(shape, transform):
    """A (C, H, W) image of width 1 to 4 was read as (H, W, C): (1, 80, 1) came back as (1, 1, 80) and (3, 4, 4)
    as (1, 3, 4)."""
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for given in (img, torch.as_tensor(img)):
        assert tuple(transform(given).shape) == (1, *shape[1:])


@pytest.mark.parametrize("make", [
    lambda: Deannotate(), lambda: DopplerToGray(), lambda: DopplerToGray("mask"), lambda: FieldOfViewMask(),
], ids=["deannotate", "doppler inpaint", "doppler mask", "field of view"])
def test_bfloat16_tensors_are_read_as_float32_ones(make) -> None:
    """numpy has no bfloat16: a bf16 frame (a bf16 pipeline's) raised "Got unsupported ScalarType BFloat16". Read
    as float32, which holds every bf16 value exactly, it gives the float32 frame's result, back in bf16 (a mask in
    bool). Tolerance: one bf16 step of the result (2^-8 relative), the rounding of the way back."""
    unit = torch.as_tensor(screen()).float().div(255).bfloat16()
    out = make()(unit)
    reference = make()(unit.float())
    assert out.dtype == (torch.bool if reference.dtype == torch.bool else torch.bfloat16)
    torch.testing.assert_close(out.float(), reference.float(), atol=0, rtol=2**-8)


@pytest.mark.parametrize("dict_version", [False, True])
def test_the_field_of_view_mask_keeps_the_images_metadata(dict_version) -> None:
    """MONAI's ``ForegroundMask`` returns its mask with the image's metadata; this mask came back a plain tensor,
    so a saved or inverted mask lost the image's affine and file name."""
    affine = torch.diag(torch.tensor([0.3, 0.2, 1.0, 1.0], dtype=torch.float64))
    img = MetaTensor(torch.as_tensor(screen()), affine=affine, meta={"filename_or_obj": "scan.png"})
    mask = FieldOfViewMaskd("image")({"image": img})["fov"] if dict_version else FieldOfViewMask()(img)
    assert isinstance(mask, MetaTensor) and mask.dtype == torch.bool and mask.shape == (1, 128, 128)
    assert mask.meta["filename_or_obj"] == "scan.png"
    torch.testing.assert_close(mask.affine, affine)


@pytest.mark.parametrize("kind", ["numpy", "tensor", "metatensor"])
@pytest.mark.parametrize("make,keys", [
    (lambda: Deannotated("image", annotation_key="ann", fov_key="fov"), ("ann", "fov")),
    (lambda: DopplerToGrayd("image", colour_key="colour"), ("colour",)),
], ids=["deannotated", "doppler"])
def test_the_dict_versions_masks_come_in_the_images_type(kind, make, keys) -> None:
    """The annotation, field-of-view and colour masks were numpy arrays beside a tensor image: off its device and
    without its metadata, where ``FieldOfViewMaskd`` gave its mask in the image's type."""
    u8 = screen()
    img = {"numpy": u8, "tensor": torch.as_tensor(u8),
           "metatensor": MetaTensor(torch.as_tensor(u8), meta={"filename_or_obj": "scan.png"})}[kind]
    d = make()({"image": img})
    for key in keys:
        mask = d[key]
        assert mask.shape == (1, 128, 128) and mask.dtype in (np.bool_, torch.bool)
        assert isinstance(mask, torch.Tensor) == (kind != "numpy")
        assert (kind != "metatensor") or mask.meta["filename_or_obj"] == "scan.png"
