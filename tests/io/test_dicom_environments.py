"""MONAI Label runs in its own environment with pydicom 2.4 (``.venv-label``): its decoding of awkward DICOMs must
equal the main environment's (pydicom 3) to the last bit, or the served model would see other pixels than training."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from monai_ext.io.dicom import iter_dicom_frames, read_dicom
from monai_ext.io.display import to_gray_unit
from monai_ext.io.images import read_image
from monai_ext.io.writers import write_dicom_frames, write_dicom_values

REPO = Path(__file__).resolve().parents[2]
rows, cols = np.mgrid[0:48, 0:64]
SCENE12 = np.rint(4095 * (0.5 + 0.5 * np.sin(rows / 5.0) * np.cos(cols / 7.0))).astype(np.uint16)
RGB = np.stack([SCENE12 >> 4, cols * 4, 255 - rows * 5], -1).astype(np.uint8)

DECODE = """
import json, sys
import numpy as np
import pydicom
from monai_ext.io.dicom import iter_dicom_frames, read_dicom
from monai_ext.io.display import to_gray_unit
from monai_ext.io.images import read_image
paths = json.loads(sys.argv[1])
np.savez(sys.argv[2], **{name: to_gray_unit(read_image(path).pixels, path) for name, path in paths.items()})
print(pydicom.__version__)
"""


def write_cases(folder: Path) -> dict[str, str]:
    """The DICOM forms whose decoding differs between pydicom versions or decoders unless the decoder evens it out."""
    voi = Dataset()
    voi.add_new(0x00283002, "US", [2048, 1024, 8])
    voi.add_new(0x00283006, "US", np.rint(255 * (np.arange(2048) / 2047) ** 0.5).astype(int).tolist())
    garbage = write_dicom_values(SCENE12, folder / "garbage_bits.dcm", bits_stored=12)
    ds = pydicom.dcmread(garbage)
    ds.PixelData = (np.frombuffer(ds.PixelData, "<u2") | np.uint16(0xF000)).astype("<u2").tobytes()
    ds.save_as(garbage)
    paths = {
        "garbage_bits": garbage,
        "high_bit_15": write_dicom_values(SCENE12, folder / "high_bit.dcm", bits_stored=12, high_bit=15),
        "window": write_dicom_values(SCENE12, folder / "window.dcm", bits_stored=12, photometric="MONOCHROME1",
                                     attributes={"WindowCenter": 1500, "WindowWidth": 1200}),
        "rescaled": write_dicom_values(SCENE12.astype(np.int16) - 2048, folder / "rescaled.dcm", bits_stored=12,
                                       attributes={"RescaleSlope": 0.5, "RescaleIntercept": 20,
                                                   "WindowCenter": 100, "WindowWidth": 600}),
        "voi_lut": write_dicom_values(SCENE12, folder / "voi_lut.dcm", bits_stored=12,
                                      attributes={"VOILUTSequence": Sequence([voi])}),
        "palette": write_dicom_frames((SCENE12 >> 4).astype(np.uint8)[None], folder / "palette.dcm", "PALETTE COLOR"),
    }
    for photometric, syntax in [("YBR_FULL_422", "jpeg_baseline"), ("YBR_FULL", "explicit"), ("YBR_FULL", "rle"),
                                ("RGB", "jpeg2000")]:
        name = f"{photometric}_{syntax}"
        paths[name] = write_dicom_frames(RGB[None], folder / f"{name}.dcm", photometric, syntax)
    mislabelled = pydicom.dcmread(paths["YBR_FULL_422_jpeg_baseline"])  # a JFIF stream whose header says RGB
    mislabelled.PhotometricInterpretation = "RGB"
    mislabelled.save_as(folder / "RGB_jfif.dcm")
    paths["RGB_jfif"] = folder / "RGB_jfif.dcm"
    paths.update(_colour_marked_streams(folder))
    return {name: str(path) for name, path in paths.items()}


def _colour_marked_streams(folder: Path) -> dict[str, Path]:
    """JPEG streams whose markers say RGB (R, G, B component ids, labelled either way: pydicom 2.4's libjpeg converts
    a frame labelled RGB from YCbCr itself) or YCbCr (JFIF beside R, G, B ids; an Adobe marker) under an RGB label."""
    from pydicom.encaps import encapsulate

    from tests.io.test_images import _adobe_ycbcr_stream, _jfif_stream_with_rgb_ids, _rgb_id_stream, _rgb_scene

    scene, paths = _rgb_scene(), {}
    for name, header, make in (("RGB_ids_as_YBR", "YBR_FULL_422", _rgb_id_stream),
                               ("RGB_ids_as_RGB", "RGB", _rgb_id_stream),
                               ("JFIF_with_RGB_ids", "RGB", _jfif_stream_with_rgb_ids),
                               ("Adobe_YCbCr_as_RGB", "RGB", _adobe_ycbcr_stream)):
        ds = pydicom.dcmread(write_dicom_frames(scene[None], folder / f"{name}.dcm", "YBR_FULL_422", "jpeg_baseline"))
        ds.PhotometricInterpretation = header
        ds.PixelData = encapsulate([make(scene)])
        ds.save_as(folder / f"{name}.dcm")
        paths[name] = folder / f"{name}.dcm"
    return paths


@pytest.mark.slow
def test_monai_label_environment_decodes_every_dicom_form_identically(label_python, tmp_path) -> None:
    paths = write_cases(tmp_path)
    result = subprocess.run([str(label_python), "-c", DECODE, json.dumps(paths), str(tmp_path / "label.npz")], check=False,
                            cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("2."), f"expected pydicom 2.x there, got {result.stdout!r}"
    label = np.load(tmp_path / "label.npz")
    for name, path in paths.items():
        main = to_gray_unit(read_image(path).pixels, path)
        assert main.std() > 0.05, name
        np.testing.assert_array_equal(label[name], main, err_msg=name)


FRAME_MEANS = """
import json, sys, warnings
from monai_ext.io.dicom import iter_dicom_frames, read_dicom
warnings.simplefilter("ignore")
paths = json.loads(sys.argv[1])
print(json.dumps({name: [float(f.mean()) for _, f in iter_dicom_frames(read_dicom(p), p)] for name, p in paths.items()}))
"""


@pytest.mark.slow
def test_monai_label_environment_counts_the_frames_a_wrong_header_leaves_out(label_python, tmp_path) -> None:
    """pydicom 2.4 parses encapsulated data with other functions than 3.x: both count the frames alike."""
    from pydicom.encaps import generate_frames

    from tests.io.test_dicom_frames import loop_with_header, with_offset_table

    paths = {f"{syntax}_{header}_{table}": str(loop_with_header(tmp_path, syntax, header, table))
             for syntax in ("rle", "jpeg2000", "jpeg_baseline") for header in (None, 8) for table in (True, False)}
    for entries in (1, 3):  # a Basic Offset Table the fragments contradict is dropped alike
        loop = loop_with_header(tmp_path, "jpeg_baseline", 5)
        lengths = [len(f) + 8 for f in generate_frames(pydicom.dcmread(loop).PixelData, number_of_frames=5)]
        paths[f"table_{entries}"] = str(with_offset_table(loop, [int(sum(lengths[:i])) for i in range(entries)]))
    result = subprocess.run([str(label_python), "-c", FRAME_MEANS, json.dumps(paths)], check=False, cwd=REPO,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    label = json.loads(result.stdout)
    for name, path in paths.items():
        with pytest.warns(UserWarning, match="holds 5 frames|does not fit its 5 frames"):
            main = [float(frame.mean()) for _, frame in iter_dicom_frames(read_dicom(path), path)]
        assert len(main) == 5 and label[name] == main, name


CODEC_ERROR = """
import sys
from monai_ext.io.dicom import iter_dicom_frames, read_dicom
from monai_ext.io.errors import UnreadableImageError
try:
    list(iter_dicom_frames(read_dicom(sys.argv[1]), sys.argv[1]))
except UnreadableImageError as e:
    print(e)
"""


@pytest.mark.slow
def test_a_codec_error_names_the_file_in_monai_labels_environment_too(label_python, tmp_path) -> None:
    """pydicom 2.4 decodes every frame when the frames are first asked for: its codec errors escaped unnamed (a
    RuntimeError or ValueError, a server error in MONAI Label instead of the file's reason)."""
    from tests.io.test_dicom_frames import rle_split_over_fragments

    path = rle_split_over_fragments(tmp_path)
    result = subprocess.run([str(label_python), "-c", CODEC_ERROR, str(path)], check=False, cwd=REPO,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{path}: cannot decode its pixel data (RLE Lossless" in result.stdout


FIRST_FRAMES = """
import json, sys, warnings
import numpy as np
from monai_ext.io.dicom import iter_dicom_frames, read_dicom
warnings.simplefilter("ignore")
paths = json.loads(sys.argv[1])
np.savez(sys.argv[2], **{name: next(iter_dicom_frames(read_dicom(p), p))[1] for name, p in paths.items()})
"""

#: pydicom's test files that pydicom 2.4 decoded otherwise than 3.x, and a pixel (row, column) whose value is known
#: from what each file holds: a near-white RGB stream coded without colour transform and without a marker saying so
#: (an Adobe APP14 segment too short to count, in SC_rgb_jpeg.dcm), read magenta (255, 121, 255) from YCbCr;
#: red bands of near-lossless JPEG-LS RGB, line and sample interleaved, read (76, 255, 28); CT air (-2000 in a
#: signed header, coded unsigned in the J2K stream) under the file's window 40 / 100, read white (1.0).
SHIPPED_PARITY = [("SC_jpeg_no_color_transform.dcm", (5, 50), (244, 244, 244)),
                  ("SC_rgb_jpeg.dcm", (5, 50), (244, 244, 244)),
                  ("SC_rgb_jls_lossy_line.dcm", (5, 50), (255, 0, 0)),
                  ("SC_rgb_jls_lossy_sample.dcm", (5, 50), (255, 0, 0)),
                  ("J2K_pixelrep_mismatch.dcm", (5, 50), 0.0)]


@pytest.fixture(scope="module")
def label_first_frames(label_python, module_tmp) -> dict[str, np.ndarray]:
    """The first displayed frame of each of :data:`SHIPPED_PARITY`'s files in MONAI Label's environment; the files
    are this environment's pydicom's (2.4 ships fewer)."""
    from tests.io.test_dicom_third_party import shipped

    paths = {name: str(shipped(name)) for name, _, _ in SHIPPED_PARITY}
    out = module_tmp("label_first_frames") / "frames.npz"
    result = subprocess.run([str(label_python), "-c", FIRST_FRAMES, json.dumps(paths), str(out)], check=False,
                            cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.slow
@pytest.mark.parametrize("name, pixel, value", SHIPPED_PARITY, ids=[case[0] for case in SHIPPED_PARITY])
def test_monai_label_environment_decodes_pydicoms_jpeg_family_files_as_pydicom_3(
        label_first_frames, name, pixel, value) -> None:
    """pydicom 2.4's libjpeg converted any 3-sample stream labelled RGB from YCbCr, and its J2K handler left a signed
    header unsigned: the served image was another than the bundle's, without an error. The reference is pydicom 3's
    own decoding through its public functions (``reference_display``, independent of this package), and a known
    pixel of each file."""
    from tests.io.test_dicom_third_party import reference_display, shipped

    reference_ds = pydicom.dcmread(shipped(name))
    decoded = reference_ds.pixel_array
    reference = reference_display(decoded, reference_ds, decoded[None])
    label = label_first_frames[name]
    assert label.shape == reference.shape
    if np.issubdtype(label.dtype, np.integer):  # RGB: the stored values, exact and of the same type
        assert label.dtype == reference.dtype
    np.testing.assert_allclose(label[pixel], value, atol=1e-6)
    np.testing.assert_allclose(label, reference, atol=1e-6)


FRAMES_ALONE = """
import json, sys, warnings
import pydicom
from monai_ext.io.dicom import iter_dicom_frames, read_dicom
warnings.simplefilter("ignore")
from pydicom.pixel_data_handlers import pylibjpeg_handler, rle_handler
decoded = []  # the bytes of pixel data each decoding by a handler was given
def counting(handler):
    get_pixeldata = handler.get_pixeldata
    def wrapped(ds, *args, **kwargs):
        decoded.append(len(ds.PixelData))
        return get_pixeldata(ds, *args, **kwargs)
    handler.get_pixeldata = wrapped
counting(pylibjpeg_handler)
counting(rle_handler)
path, stride = sys.argv[1], int(sys.argv[2])
ds = read_dicom(path)
means = [[index, float(frame.mean())] for index, frame in iter_dicom_frames(ds, path, stride)]
print(json.dumps({"means": means, "decoded": decoded, "whole": len(ds.PixelData)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("syntax", ["jpeg_baseline", "rle", "jpeg2000"])
@pytest.mark.parametrize("stride", [1, 2, 5])
def test_monai_labels_environment_decodes_the_frames_asked_for_one_at_a_time(label_python, tmp_path, syntax,
                                                                             stride) -> None:
    """pydicom 2.4 decoded every frame of a loop to give its first (MONAI Label's first frame of a 300-frame 640x480
    colour loop: 11 s and 280 MB more); each frame is decoded alone now, and gives the frame pydicom 3 gives."""
    from tests.io.test_dicom_frames import loop_with_header

    path = str(loop_with_header(tmp_path, syntax, 5))
    result = subprocess.run([str(label_python), "-c", FRAMES_ALONE, path, str(stride)], check=False, cwd=REPO,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    label = json.loads(result.stdout)
    main = [[index, float(frame.mean())] for index, frame in iter_dicom_frames(read_dicom(path), path, stride)]
    assert label["means"] == main and [index for index, _ in main] == list(range(0, 5, stride))
    assert label["decoded"] and max(label["decoded"]) < label["whole"] / 2  # no handler was given the whole loop
