"""NIfTI (MONAI NibabelReader) and NRRD / MHA / MHD (MONAI ITKReader): slices shown as their viewers show them."""

from __future__ import annotations

import itk
import nibabel as nib
import numpy as np
import pytest

from monai_ext.io.errors import SkippedSource, UnreadableImageError
from monai_ext.io.volumes import (
    first_volume_frame,
    iter_volume_frames,
    metaimage_data_file,
    volume_plane_count,
    without_metaimage_data_files,
)
from monai_ext.io.writers import LPS_AFFINE

ROWS, COLS = 12, 20


def picture(seed: int = 0) -> np.ndarray:
    """(rows, cols) uint8 with distinct rows and columns, so a transposed slice cannot pass."""
    return np.random.default_rng(seed).integers(1, 256, (ROWS, COLS), np.uint8)


def write_itk(array_zyx: np.ndarray, path, is_vector: bool = False):
    """ITK writes numpy arrays in (z, y, x) order: rows = y, as the viewer shows."""
    itk.imwrite(itk.image_from_array(np.ascontiguousarray(array_zyx), is_vector=is_vector), str(path))
    return path


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd", ".nii.gz"])
def test_8_bit_images_are_shown_as_stored(tmp_path, suffix) -> None:
    gray = picture()
    path = tmp_path / f"image{suffix}"
    if suffix == ".nii.gz":
        nib.save(nib.Nifti1Image(gray.T.copy(), LPS_AFFINE), str(path))  # NIfTI is (x, y)
    else:
        write_itk(gray, path)
    frame = first_volume_frame(path)
    assert frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, gray)


def test_other_types_are_windowed_to_the_volume_percentiles(tmp_path) -> None:
    volume = np.random.default_rng(3).normal(100.0, 40.0, (4, ROWS, COLS)).astype(np.float32)  # (z, y, x)
    volume[1] = 0.0  # an empty slice is skipped
    path = write_itk(volume, tmp_path / "volume.mha")
    low, high = np.percentile(volume, [0.5, 99.5])  # one window for the whole volume, empty slice included
    frames = list(iter_volume_frames(path))
    assert [k for k, _ in frames] == [0, 2, 3]
    for k, pixels in frames:
        np.testing.assert_allclose(pixels, np.clip((volume[k] - low) / (high - low), 0, 1), atol=1e-6)


def test_slice_axis_and_stride_follow_x_y_z_order(tmp_path) -> None:
    volume = np.random.default_rng(4).integers(1, 256, (6, ROWS, COLS), np.uint8)  # (z, y, x)
    path = write_itk(volume, tmp_path / "volume.nrrd")
    along_z = list(iter_volume_frames(path, slice_axis=2, slice_stride=2))
    assert [k for k, _ in along_z] == [0, 2, 4]
    np.testing.assert_array_equal(along_z[1][1], volume[2])
    _, along_x = next(iter_volume_frames(path, slice_axis=0))
    np.testing.assert_array_equal(along_x, volume[::-1, :, 0])  # rows = z, superior on top; columns = y


def test_colour_images_keep_their_components_last(tmp_path) -> None:
    rgb = np.stack([picture(1), picture(2), picture(3)], axis=-1)
    path = write_itk(rgb, tmp_path / "colour.nrrd", is_vector=True)
    np.testing.assert_array_equal(first_volume_frame(path), rgb)


@pytest.mark.parametrize("fill, match", [(0.0, "volume is constant"), (np.nan, "volume is constant")])
def test_volumes_without_content_are_skipped_with_the_reason(tmp_path, fill, match) -> None:
    path = tmp_path / "blank.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 3), fill, np.float32), LPS_AFFINE), str(path))
    with pytest.raises(SkippedSource, match=f"blank.nii.gz: {match}"):
        first_volume_frame(path)


@pytest.mark.parametrize("depth, times", [(1, 3), (1, 6), (2, 4)])  # a 2-D cine, and a 3-D one (x, y, z, t)
def test_a_4d_nifti_gives_every_slice_of_every_time_point(tmp_path, depth: int, times: int) -> None:
    """NIfTI's 4th axis is time (its 5th holds components): 3 or 4 time points are not one RGB(A) picture, and more
    are not refused as a picture with that many channels."""
    volume = np.random.default_rng(5).integers(1, 256, (COLS, ROWS, depth, times), np.uint8)  # (x, y, z, t)
    path = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(volume, LPS_AFFINE), str(path))
    frames = list(iter_volume_frames(path))
    assert [k for k, _ in frames] == list(range(depth * times))  # time point t, slice k: frame t * depth + k
    for index, pixels in frames:
        np.testing.assert_array_equal(pixels, volume[:, :, index % depth, index // depth].T)
    assert [k for k, _ in iter_volume_frames(path, frame_stride=2)] == [
        t * depth + k for t in range(0, times, 2) for k in range(depth)]
    np.testing.assert_array_equal(first_volume_frame(path), volume[:, :, 0, 0].T)


def test_a_nifti_5th_axis_holds_colour_components(tmp_path) -> None:
    rgb = np.stack([picture(1), picture(2), picture(3)], axis=-1)  # (rows, cols, 3)
    path = tmp_path / "colour.nii.gz"
    nib.save(nib.Nifti1Image(rgb.transpose(1, 0, 2)[:, :, None, None, :].copy(), LPS_AFFINE), str(path))  # x, y, z, t, c
    np.testing.assert_array_equal(first_volume_frame(path), rgb)


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
@pytest.mark.parametrize("flat_axis", [0, 1, 2])  # (1, H, W): a channel-first 2-D array saved as it was
def test_a_volume_one_plane_thick_is_that_plane_whatever_the_slice_axis(tmp_path, flat_axis: int,
                                                                        slice_axis: int) -> None:
    """Slicing across the plane gave one-pixel-wide lines: a silent 1 x N image to the loader. Saved with the RAS
    identity (nibabel's and MONAI's default when the orientation is unknown), it shows as stored."""
    volume = np.expand_dims(picture(6).T, flat_axis)  # the (x, y) plane, with a singleton axis inserted
    path = tmp_path / "plane.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    frames = list(iter_volume_frames(path, slice_axis=slice_axis))
    assert len(frames) == 1
    np.testing.assert_array_equal(frames[0][1], np.swapaxes(np.take(volume, 0, axis=flat_axis), 0, 1))


@pytest.mark.parametrize("shape", [(0, ROWS, 3), (COLS, 0), (COLS, ROWS, 0)])
def test_a_volume_without_voxels_is_refused_as_empty(tmp_path, shape: tuple[int, ...]) -> None:
    """MONAI's reader gives such a file as shape (0,): it was refused as 'expected a 2-D ... volume, got (0,)'."""
    path = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), LPS_AFFINE), str(path))
    with pytest.raises(UnreadableImageError, match=r"empty.nii.gz: empty volume \(no voxels\)$"):
        first_volume_frame(path)


def _renamed_header(tmp_path):
    """``sweep.mhd`` renamed ``study 3.mhd``: it still names ``sweep.raw``, which no longer shares its name."""
    write_itk(picture()[None], tmp_path / "sweep.mhd")
    header = tmp_path / "study 3.mhd"
    (tmp_path / "sweep.mhd").rename(header)
    return header


def test_a_renamed_header_still_reads_and_names_its_voxel_file(tmp_path) -> None:
    header = _renamed_header(tmp_path)
    np.testing.assert_array_equal(first_volume_frame(header), picture())  # ITK follows ElementDataFile
    assert metaimage_data_file(header) == tmp_path / "sweep.raw"
    assert without_metaimage_data_files([tmp_path / "sweep.raw", tmp_path / "notes.txt"], [header]) == \
        [tmp_path / "notes.txt"]


@pytest.mark.parametrize("line, expected", [
    (b"ElementDataFile = LOCAL", None),  # voxels inside the header
    (b"ElementDataFile = LIST 2D", None),  # slice files listed on the following lines
    (b"ElementDataFile = slice%03d.raw 1 10 1", None),  # a numbered pattern
    (b"ElementDataFile =", None),
    (b"ElementSpacing = 1 1", None),  # no ElementDataFile line at all
    (b"ElementDataFile = voxels.zraw", "voxels.zraw"),
    (b"ElementDataFile=voxels.raw\r", "voxels.raw"),  # written on Windows, no spaces
])
def test_the_voxel_file_named_in_a_header(tmp_path, line: bytes, expected: str | None) -> None:
    header = tmp_path / "a.mhd"
    header.write_bytes(b"ObjectType = Image\nNDims = 2\n" + line + b"\n")
    assert metaimage_data_file(header) == (None if expected is None else tmp_path / expected)
    assert metaimage_data_file(tmp_path / "missing.mhd") is None


@pytest.mark.parametrize("affine, stored", [
    (LPS_AFFINE, lambda p: p),                          # L, P, S: shown as stored
    (np.diag([-1.0, 1.0, 1.0, 1.0]), lambda p: p[::-1]),  # dcm2niix's rows flipped (y along A), said by the affine
    (np.eye(4), lambda p: p),                           # one plane with the RAS identity: a writer's default
    (None, lambda p: p),                                # no qform or sform: storage order
])
def test_a_nifti_is_shown_as_its_affine_says_viewers_show_it(tmp_path, affine, stored) -> None:
    """Ignoring the affine showed a dcm2niix conversion upside down, and a PNG mask paired with it lay on
    background: ITK-SNAP and 3D Slicer show the picture ``picture()``."""
    gray = picture(5)
    image = nib.Nifti1Image(np.ascontiguousarray(stored(gray).T), affine)
    if affine is None:
        assert int(image.header["qform_code"]) == int(image.header["sform_code"]) == 0
    nib.save(image, str(tmp_path / "scan.nii.gz"))
    np.testing.assert_array_equal(first_volume_frame(tmp_path / "scan.nii.gz"), gray)


@pytest.mark.parametrize("direction, stored", [
    (np.diag([1.0, -1.0]), lambda p: p[::-1]),
    (np.diag([-1.0, 1.0]), lambda p: p[:, ::-1]),
    (np.array([[0.0, 1.0], [1.0, 0.0]]), lambda p: p.T),  # stored x along P, y along L
])
def test_an_itk_image_is_shown_as_its_direction_says(tmp_path, direction, stored) -> None:
    gray = picture(6)
    image = itk.image_from_array(np.ascontiguousarray(stored(gray)))
    image.SetDirection(itk.matrix_from_array(direction))
    itk.imwrite(image, str(tmp_path / "scan.mha"))
    np.testing.assert_array_equal(first_volume_frame(tmp_path / "scan.mha"), gray)


def test_a_ras_volume_shows_its_axial_slices_turned_as_viewers_show_them(tmp_path) -> None:
    volume = np.random.default_rng(9).integers(1, 256, (COLS, ROWS, 3), np.uint8)  # x toward R, y toward A
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / "ras.nii.gz"))
    frames = list(iter_volume_frames(tmp_path / "ras.nii.gz"))
    np.testing.assert_array_equal(frames[1][1], volume[::-1, ::-1, 1].T)  # the patient's left to the right, anterior up


def test_a_sagittal_series_is_cut_into_its_acquired_slices(tmp_path) -> None:
    """dcm2niix's layout of a sagittal series: x toward P, y toward S, z toward L. Turned to LPS first, it was cut
    across its slices into thin strips; its slices are the stored z planes, superior on top, anterior on the left."""
    volume = np.random.default_rng(10).integers(1, 256, (COLS, ROWS, 4), np.uint8)
    affine = np.zeros((4, 4))
    affine[1, 0], affine[2, 1], affine[0, 2], affine[3, 3] = -1.0, 1.0, -1.0, 1.0  # RAS: x -> -A, y -> S, z -> -R
    nib.save(nib.Nifti1Image(volume, affine), str(tmp_path / "sagittal.nii.gz"))
    frames = list(iter_volume_frames(tmp_path / "sagittal.nii.gz"))
    assert len(frames) == volume_plane_count(tmp_path / "sagittal.nii.gz") == 4
    np.testing.assert_array_equal(frames[2][1], volume[:, ::-1, 2].T)


@pytest.mark.parametrize("times", [2, 3, 5])
def test_a_4d_itk_file_is_a_time_series_not_colour(tmp_path, times) -> None:
    """MONAI's ITKReader takes a 4-D scalar file's last axis for channels: 3 time points were shown as one RGB
    picture and 5 refused."""
    series = np.random.default_rng(8).integers(1, 256, (times, 2, ROWS, COLS), np.uint8)  # (t, z, y, x)
    itk.imwrite(itk.image_from_array(series), str(tmp_path / "sweep.nrrd"))
    frames = list(iter_volume_frames(tmp_path / "sweep.nrrd"))
    assert len(frames) == volume_plane_count(tmp_path / "sweep.nrrd") == 2 * times
    np.testing.assert_array_equal(frames[0][1], series[0, 0])
    np.testing.assert_array_equal(frames[-1][1], series[-1, 1])


@pytest.mark.parametrize("suffix, components", [(".mha", 3), (".mhd", 4), (".nrrd", 3)])
def test_colour_itk_images_are_read(tmp_path, suffix, components) -> None:
    """A MetaImage with ElementNumberOfChannels 3 or 4 (what itk.imwrite writes for RGB) was refused with ITK's
    TemplateTypeError."""
    rgb = np.stack([picture(k) for k in range(components)], axis=-1)
    pixel = itk.RGBPixel[itk.UC] if components == 3 else itk.RGBAPixel[itk.UC]
    image = itk.image_from_array(rgb, ttype=itk.Image[pixel, 2])
    itk.imwrite(image, str(tmp_path / f"colour{suffix}"))
    np.testing.assert_array_equal(first_volume_frame(tmp_path / f"colour{suffix}"), rgb)


def test_an_rgb24_nifti_is_read_as_colour(tmp_path) -> None:
    """What ITK and 3D Slicer write for colour: one structured voxel (R, G, B); it was refused."""
    rgb = np.stack([picture(k) for k in range(3)], axis=-1)
    voxels = np.zeros((COLS, ROWS, 1), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    for k, name in enumerate("RGB"):
        voxels[name][..., 0] = rgb[..., k].T
    nib.save(nib.Nifti1Image(voxels, LPS_AFFINE), str(tmp_path / "colour.nii.gz"))
    np.testing.assert_array_equal(first_volume_frame(tmp_path / "colour.nii.gz"), rgb)



def test_an_unusable_sform_gives_way_to_the_qform(tmp_path) -> None:
    """A zeroed sform made nibabel's orientation fail ('Unable to find out axis'): the file was refused."""
    gray = picture(11)
    image = nib.Nifti1Image(np.ascontiguousarray(gray[::-1].T), np.diag([-1.0, 1.0, 1.0, 1.0]))  # rows flipped
    image.set_qform(np.diag([-1.0, 1.0, 1.0, 1.0]), code=1)
    image.set_sform(np.zeros((4, 4)), code=1)
    nib.save(image, str(tmp_path / "odd.nii"))
    np.testing.assert_array_equal(first_volume_frame(tmp_path / "odd.nii"), gray)


def test_an_unusable_sform_and_qform_show_the_stored_order_with_a_warning(tmp_path) -> None:
    gray = picture(12)
    image = nib.Nifti1Image(np.ascontiguousarray(gray.T), None)
    image.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)
    nib.save(image, str(tmp_path / "flat.nii"))
    with pytest.warns(UserWarning, match="its sform and qform cannot be used"):
        np.testing.assert_array_equal(first_volume_frame(tmp_path / "flat.nii"), gray)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint32])
def test_colour_itk_images_of_components_itk_does_not_wrap_are_read(tmp_path, dtype) -> None:
    """Signed-char, int and unsigned-int vector pixels ended in ITK's TemplateTypeError."""
    rgb = np.stack([picture(k) // 2 for k in range(3)], axis=-1).astype(dtype)
    element = {np.int8: "MET_CHAR", np.int32: "MET_INT", np.uint32: "MET_UINT"}[dtype]
    header = (f"ObjectType = Image\nNDims = 2\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              f"DimSize = {COLS} {ROWS}\nElementNumberOfChannels = 3\nElementType = {element}\n"
              "ElementDataFile = LOCAL\n")  # written by hand: ITK's Python wrapping cannot write these either
    (tmp_path / "colour.mha").write_bytes(header.encode() + rgb.astype(rgb.dtype.newbyteorder("<")).tobytes())
    frame = first_volume_frame(tmp_path / "colour.mha")
    assert frame.shape == (ROWS, COLS, 3)
    assert np.corrcoef(frame.reshape(-1), rgb.reshape(-1).astype(float))[0, 1] > 0.99  # windowed, not scrambled


def test_a_sheared_sform_gives_way_to_the_qform_as_in_itk(tmp_path) -> None:
    gray = picture(13)
    image = nib.Nifti1Image(np.ascontiguousarray(gray[::-1].T), None)
    sheared = np.diag([1.0, -1.0, 1.0, 1.0])
    sheared[0, 1] = 0.5
    image.set_sform(sheared, code=1)
    image.set_qform(np.diag([-1.0, 1.0, 1.0, 1.0]), code=1)  # L, A: rows stored flipped
    nib.save(image, str(tmp_path / "sheared.nii"))
    np.testing.assert_array_equal(first_volume_frame(tmp_path / "sheared.nii"), gray)


@pytest.mark.parametrize(("shape_tzyx", "blank", "expected"), [
    ((1, 5, ROWS, COLS), [(0, 0), (0, 1), (0, 2)], 3),  # a sweep whose first slices are padding
    ((1, 5, ROWS, COLS), [], 0),
    ((3, 2, ROWS, COLS), [(0, 0), (0, 1), (1, 0)], 3),  # time point 1, slice 1: t * slices + k
])
def test_the_first_frame_read_is_named_by_its_index(tmp_path, shape_tzyx, blank, expected) -> None:
    """A loader takes a volume's first slice with content, not slice 0: its index is recorded with the frame count,
    so a viewer lays the 2-D mask on that slice, not on slice 0."""
    from monai_ext.io.volumes import read_first_volume_frame

    series = np.random.default_rng(12).integers(1, 256, shape_tzyx, np.uint8)
    for t, k in blank:
        series[t, k] = 0
    path = tmp_path / "sweep.nrrd"
    itk.imwrite(itk.image_from_array(series if shape_tzyx[0] > 1 else series[0]), str(path))
    first = read_first_volume_frame(path)
    assert (first.index, first.count) == (expected, shape_tzyx[0] * shape_tzyx[1])
    t, k = divmod(expected, shape_tzyx[1])
    np.testing.assert_array_equal(first.pixels, series[t, k])
    assert dict(iter_volume_frames(path))[first.index].tobytes() == first.pixels.tobytes()
