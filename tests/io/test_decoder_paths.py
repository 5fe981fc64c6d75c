"""#15 acceptance 3: awkward DICOMs, an NRRD and an MHA give identical pixels through the corpus, the training
loader, the classification bundle's inference preprocessing and the MONAI Label loader, and those pixels are the
ones the file's display definition gives (computed here by hand).

(a) corpus: :func:`monai_ext.data.frames.iter_frames`, the uint8 frame the corpus crops, resizes and caches;
(b) training: ``LoadUltrasoundImaged``; (c) bundle inference: the preprocessing of the bundle's inference config,
parsed by MONAI's ``ConfigParser``; (d) MONAI Label: ``BundleClassifier.prepare`` of the served bundle model.
MONAI Label's own environment (pydicom 2.4) is compared with this one in ``test_dicom_environments.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import itk
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from monai_ext.apps.label.bundle_model import CONFIG_FILES, load_bundle_classifier
from monai_ext.data.frames import iter_frames
from monai_ext.io.writers import write_dicom_frames, write_dicom_values
from monai_ext.networks import build_classifier
from monai_ext.networks.checkpoints.save import save_model_checkpoint
from monai_ext.transforms.loading import LoadUltrasoundImaged
from tests.bundles.helpers import CLASSIFY

ARCH, SIZE = "mae_vit_tiny_patch16_dec128d2b", 32
ROWS, COLS = 40, 56
rows, cols = np.mgrid[0:ROWS, 0:COLS]
#: A smooth 12-bit scene reaching both ends of the stored range (0 and 4095).
SCENE12 = np.rint(4095 * (0.5 + 0.5 * np.sin(rows / 5.0) * np.cos(cols / 7.0))).astype(np.uint16)


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, the LINEAR VOI function, output in [0, 1]."""
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return np.where(x <= low, 0.0, np.where(x > high, 1.0, (x - (center - 0.5)) / (width - 1) + 0.5))


def bt601(rgb: np.ndarray) -> np.ndarray:
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0


def second_frame(first: np.ndarray) -> np.ndarray:
    """A different frame after the first: single-image loaders must take the first."""
    return first[::-1].copy()


# ------------------------------------------------------------------ the files: writer -> (path, expected display)
def dicom_12_bit(folder: Path) -> tuple[Path, np.ndarray, float]:
    path = write_dicom_values(np.stack([SCENE12, second_frame(SCENE12)]), folder / "deep12.dcm", bits_stored=12)
    # no window, two frames, no range tags: one range for both, the values the whole file holds
    return path, (SCENE12 - SCENE12.min()) / float(SCENE12.max() - SCENE12.min()), 1e-6


def dicom_monochrome1(folder: Path) -> tuple[Path, np.ndarray, float]:
    gray = (SCENE12 >> 4).astype(np.uint8)
    path = write_dicom_frames(np.stack([gray, second_frame(gray)]), folder / "inverted.dcm", "MONOCHROME1")
    return path, gray / 255.0, 1e-6  # the writer stores 255 - gray: displayed, it is gray again


def dicom_window(folder: Path) -> tuple[Path, np.ndarray, float]:
    path = write_dicom_values(SCENE12, folder / "window.dcm", bits_stored=12,
                              attributes={"WindowCenter": [1500, 3000], "WindowWidth": [1200, 200]})
    return path, linear_window(SCENE12.astype(float), 1500, 1200), 1e-6


def dicom_voi_lut(folder: Path) -> tuple[Path, np.ndarray, float]:
    lut = np.rint(255 * (np.arange(2048) / 2047) ** 0.5).astype(np.uint8)  # 8-bit entries for stored 1024..3071
    item = Dataset()
    item.add_new(0x00283002, "US", [2048, 1024, 8])  # LUT Descriptor: entries, first mapped value, bits
    item.add_new(0x00283006, "US", lut.tolist())  # LUT Data
    path = write_dicom_values(SCENE12, folder / "voi_lut.dcm", bits_stored=12,
                              attributes={"VOILUTSequence": Sequence([item])})
    return path, lut[np.clip(SCENE12.astype(int) - 1024, 0, 2047)] / 255.0, 1e-6


def dicom_rescaled(folder: Path) -> tuple[Path, np.ndarray, float]:
    signed = SCENE12.astype(np.int16) - 2048  # signed stored values, as CT-like exports have
    path = write_dicom_values(signed, folder / "rescaled.dcm", bits_stored=12, attributes={
        "RescaleSlope": 0.5, "RescaleIntercept": 20, "WindowCenter": 100, "WindowWidth": 600})
    return path, linear_window(signed * 0.5 + 20, 100, 600), 1e-6


def dicom_ybr_full_422(folder: Path) -> tuple[Path, np.ndarray, float]:
    rgb = np.stack([SCENE12 >> 4, (cols * 4).astype(np.uint16), (255 - rows * 5).astype(np.uint16)], -1)
    rgb = rgb.astype(np.uint8)
    path = write_dicom_frames(np.stack([rgb, second_frame(rgb)]), folder / "ybr422.dcm", "YBR_FULL_422",
                              "jpeg_baseline")
    return path, bt601(rgb.astype(float)), 6 / 255  # lossy JPEG with 4:2:2 chroma


def nrrd_8_bit(folder: Path) -> tuple[Path, np.ndarray, float]:
    gray = (SCENE12 >> 4).astype(np.uint8)
    path = folder / "scan.nrrd"
    itk.imwrite(itk.image_from_array(gray), str(path))  # (rows, cols): ITK's (y, x)
    return path, gray / 255.0, 1e-6


def mha_float_volume(folder: Path) -> tuple[Path, np.ndarray, float]:
    volume = np.stack([np.zeros((ROWS, COLS)), SCENE12 * 0.1 - 50, second_frame(SCENE12) * 0.2])  # (z, y, x)
    path = folder / "volume.mha"
    itk.imwrite(itk.image_from_array(volume.astype(np.float32)), str(path))
    low, high = np.percentile(volume.astype(np.float32), [0.5, 99.5])  # one window for the volume
    return path, np.clip((volume[1] - low) / (high - low), 0, 1), 1e-5  # slice 0 is empty: slice 1 comes first


FILES: dict[str, Callable[[Path], tuple[Path, np.ndarray, float]]] = {
    "dicom_12bit_monochrome2": dicom_12_bit, "dicom_monochrome1": dicom_monochrome1, "dicom_window": dicom_window,
    "dicom_voi_lut": dicom_voi_lut, "dicom_rescaled_modality_lut": dicom_rescaled,
    "dicom_ybr_full_422": dicom_ybr_full_422, "nrrd": nrrd_8_bit, "mha": mha_float_volume,
}


# ------------------------------------------------------------------------------------------------- the four paths
@pytest.fixture(scope="module")
def bundle_preprocessing() -> Compose:
    """The bundle's inference preprocessing, parsed from its configs as ``monai.bundle run`` and MONAI Label do."""
    parser = ConfigParser()
    parser.read_config([str(CLASSIFY / "configs" / name) for name in CONFIG_FILES])
    parser["bundle_root"], parser["image_size"] = str(CLASSIFY), SIZE
    # the standalone inference config names it "preprocessing"; as an overlay on train.yaml it was validation's
    key = "preprocessing" if "preprocessing" in parser.get() else "validate#preprocessing"
    return parser.get_parsed_content(key)


@pytest.fixture(scope="module")
def label_classifier(module_tmp):
    """The MONAI Label model (``load_bundle_classifier``) over an untrained tiny checkpoint: only its
    preprocessing matters here."""
    torch.manual_seed(0)
    network = build_classifier(ARCH, num_classes=2, img_size=SIZE)
    checkpoint = module_tmp("label_model") / "model.pt"
    save_model_checkpoint(checkpoint, network, "classifier",
                          {"arch": ARCH, "class_names": ["benign", "malignant"], "image_size": SIZE})
    return load_bundle_classifier(CLASSIFY, checkpoint, device="cpu")


@pytest.mark.parametrize("name", FILES)
def test_every_path_gives_the_same_pixels_and_the_file_s_display(tmp_path, name, bundle_preprocessing,
                                                                  label_classifier) -> None:
    path, expected, tolerance = FILES[name](tmp_path)
    # (a) corpus: the frame it crops and caches
    corpus = next(iter_frames(path)).gray()  # frames keep colour for de-annotation; gray is taken after it
    # (b) training loader
    training = LoadUltrasoundImaged("image")({"image": str(path)})["image"]
    # (c) bundle inference: its loading stage, then the whole preprocessing
    loader = bundle_preprocessing.transforms[0]
    assert isinstance(loader, LoadUltrasoundImaged)
    bundle_loaded = loader({"image": str(path)})["image"]
    bundle_input = bundle_preprocessing({"image": str(path)})["image"]
    # (d) MONAI Label: the served model's preprocessing
    label_input = label_classifier.prepare(path)[0]  # frame counts: tests/io/test_images.py

    assert training.shape == (1, ROWS, COLS) and corpus.shape == (ROWS, COLS)
    np.testing.assert_allclose(training[0], expected, atol=tolerance)  # the display the file defines
    np.testing.assert_array_equal(corpus, np.rint(training[0] * np.float32(255)).astype(np.uint8))
    np.testing.assert_array_equal(np.asarray(bundle_loaded), training)
    rest_of_bundle = Compose(bundle_preprocessing.transforms[1:])
    from_training_pixels = rest_of_bundle({"image": training.copy()})["image"]
    np.testing.assert_array_equal(np.asarray(bundle_input), np.asarray(from_training_pixels))
    assert label_input.shape == (1, 3, SIZE, SIZE)
    np.testing.assert_array_equal(label_input[0].numpy(), np.asarray(bundle_input))
    assert float(np.ptp(expected)) > 0.3  # a real image, so equality above is not between blanks
