"""A generated ultrasound corpus with every supported format and the bad inputs a real archive has."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.io.writers import LPS_AFFINE, write_dicom_frames

IDENTITY = {"PatientName": "DOE^SECRETNAME", "PatientID": "PHI-ID-73519", "PatientBirthDate": "19610407",
            "AccessionNumber": "ACC-884213"}
DICOM_CASES = [  # (photometric, transfer syntax): every transfer syntax and every photometric interpretation
    ("MONOCHROME2", "explicit"), ("MONOCHROME1", "explicit"), ("RGB", "explicit"), ("YBR_FULL", "explicit"),
    ("PALETTE COLOR", "explicit"), ("MONOCHROME2", "rle"), ("RGB", "rle"), ("MONOCHROME2", "jpeg2000"),
    ("YBR_FULL_422", "jpeg_baseline"), ("MONOCHROME2", "jpeg_baseline"), ("MONOCHROME2", "jpeg_lossless"),
]
FRAMES_PER_DICOM = 3
_seed = iter(range(10_000))


def write_case(frames: np.ndarray, path: Path, photometric: str, syntax: str,
               identity: dict[str, str] | None = None) -> Path:
    """``write_dicom_frames``, plus JPEG lossless (process 14), which only this project's test encoder writes."""
    if syntax != "jpeg_lossless":
        return write_dicom_frames(frames, path, photometric, syntax, identity=identity)
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    from tests.data.jpeg_lossless import encode_jpeg_lossless

    write_dicom_frames(frames, path, photometric, "explicit", identity=identity)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([encode_jpeg_lossless(frame) for frame in frames])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.save_as(path, enforce_file_format=True)
    return path


def us_image(size: int = 96, seed: int | None = None) -> np.ndarray:
    """A simulated B-mode frame (H, W) uint8; distinct from earlier calls unless ``seed`` is given."""
    return simulate_frame(next(_seed) + 1000 if seed is None else seed, SimulatorConfig(size=size)).image


def build(root: Path) -> dict[str, object]:
    """Write the corpus under ``root``; returns the expected frame counts per dataset and the planted files.

    The frames' seeds restart on every call, so the corpus (and so which frames hash alike) does not depend on
    which tests ran before in the same process.
    """
    seeds = itertools.count(1000)

    def image(size: int = 96) -> np.ndarray:
        return us_image(size, next(seeds))

    images, dicom, volumes, video, dups = (root / n for n in ("images", "dicom", "volumes", "video", "dups"))
    for folder in (images, dicom, volumes, video, dups):
        folder.mkdir(parents=True)
    expected = {"images": 0, "dicom": 0, "volumes": 0, "video": 0, "dups": 0}
    # ---- images: every format and mode, plus the awkward ones
    cv2.imwrite(str(images / "gray.png"), image())
    cv2.imwrite(str(images / "photo.jpg"), image(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(images / "bitmap.bmp"), image())
    cv2.imwrite(str(images / "scan.tiff"), image())
    cv2.imwrite(str(images / "deep16.png"), image().astype(np.uint16) * 257)
    Image.fromarray(np.dstack([np.repeat(image()[..., None], 3, 2), np.full((96, 96), 255, np.uint8)]), "RGBA").save(images / "alpha.png")
    Image.fromarray(image()).convert("P").save(images / "palette.png")
    cv2.imwrite(str(images / "name with spaces éü.png"), image())
    huge = np.zeros((12000, 12000), np.uint8)
    huge[1000:11000, 2000:10000] = cv2.resize(image(), (8000, 10000), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(images / "huge.png"), huge, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    expected["images"] = 9
    bad = {"tiny.png": "smaller than", "empty.png": "empty file", "truncated.png": "cannot decode",
           "truncated.jpg": "cannot decode", "missing.png": "cannot open"}
    cv2.imwrite(str(images / "tiny.png"), np.full((1, 1), 128, np.uint8))
    (images / "empty.png").write_bytes(b"")
    full = cv2.imencode(".png", image())[1].tobytes()
    (images / "truncated.png").write_bytes(full[: len(full) // 2])
    full = cv2.imencode(".jpg", image())[1].tobytes()
    (images / "truncated.jpg").write_bytes(full[: len(full) // 3])
    os.symlink(images / "does-not-exist.png", images / "missing.png")  # unreadable: a broken link
    # ---- DICOM: multi-frame in every transfer syntax and photometric interpretation
    for photometric, syntax in DICOM_CASES:
        frames = np.stack([image() for _ in range(FRAMES_PER_DICOM)])
        write_case(frames, dicom / f"{photometric.replace(' ', '_')}_{syntax}.dcm", photometric, syntax, IDENTITY)
        expected["dicom"] += FRAMES_PER_DICOM
    region = np.zeros((1, 120, 160), np.uint8)
    region[0, 10:106, 40:136] = image()
    region[0, 2:8, 2:150] = 255  # a text-like bar outside the region
    write_dicom_frames(region, dicom / "with_region.dcm", region_box=(40, 10, 136, 106), identity=IDENTITY)
    expected["dicom"] += 1
    (dicom / "notes.dcm").write_text("this is not a DICOM file\n")
    bad["notes.dcm"] = "not a DICOM image"
    write_dicom_frames(np.stack([image()]), dicom / "ct_scan.dcm", modality="CT")
    bad["ct_scan.dcm"] = "modality 'CT' is not 'US'"
    _dicom_without_pixels(dicom / "no_pixels.dcm")
    bad["no_pixels.dcm"] = "no pixel data"
    # ---- volumes: NIfTI and MHA, (x, y, z) with empty slices that must be skipped
    import itk
    import nibabel as nib

    volume = np.zeros((96, 96, 6), np.float32)  # (x, y, z)
    for z in (0, 2, 3, 5):
        volume[..., z] = image().T
    nib.save(nib.Nifti1Image(volume, LPS_AFFINE), str(volumes / "volume.nii.gz"))
    itk.imwrite(itk.image_from_array(np.ascontiguousarray(volume.transpose(2, 1, 0))), str(volumes / "volume.mha"))
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 4), np.float32), LPS_AFFINE), str(volumes / "zeros.nii.gz"))
    # a MetaImage header and its voxel file (sweep.mhd + sweep.raw): one volume, the .raw not a file passed over;
    # mirrored so that its slices are not near-duplicates of the MHA's
    itk.imwrite(itk.image_from_array(np.ascontiguousarray(volume[::-1].transpose(2, 1, 0))), str(volumes / "sweep.mhd"))
    expected["volumes"] = 12
    bad["zeros.nii.gz"] = "constant"
    # ---- cine loop
    writer = cv2.VideoWriter(str(video / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96), isColor=True)
    for _ in range(5):
        writer.write(cv2.cvtColor(image(), cv2.COLOR_GRAY2BGR))
    writer.release()
    expected["video"] = 5
    # ---- planted duplicates: an exact copy and a slightly noisy copy of one image
    original = image()
    cv2.imwrite(str(dups / "original.png"), original)
    cv2.imwrite(str(dups / "exact_copy.png"), original)
    noisy = np.clip(original.astype(int) + np.random.default_rng(0).integers(-2, 3, original.shape), 0, 255)
    cv2.imwrite(str(dups / "near_copy.png"), noisy.astype(np.uint8))
    expected["dups"] = 3
    # ---- an evaluation set: one image that also sits in the corpus, one that does not
    evaluation = root.parent / f"{root.name}_evaluation" / "busbra"
    evaluation.mkdir(parents=True)
    cv2.imwrite(str(evaluation / "bus_0001.png"), cv2.imread(str(images / "gray.png"), cv2.IMREAD_UNCHANGED))
    cv2.imwrite(str(evaluation / "bus_0002.png"), image())
    # ---- loops in other containers (written last: the frames above keep their seeds), and files of no image type
    Image.fromarray(image()).save(video / "loop.gif", save_all=True, append_images=[Image.fromarray(image())
                                                                                    for _ in range(2)], duration=100)
    writer = cv2.VideoWriter(str(video / "clip.mov"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 96), isColor=True)
    for _ in range(4):
        writer.write(cv2.cvtColor(image(), cv2.COLOR_GRAY2BGR))
    writer.release()
    expected["video"] += 3 + 4
    (video / "labels.csv").write_text("file,label\nclip.avi,normal\n")
    (video / "rf_data.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    (volumes / "beams.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    (volumes / "notes.txt").write_text("acquired 2019\n")
    not_read = {".csv": 1, ".h5": 1, ".mat": 1, ".txt": 1}
    return {"expected": expected, "bad": bad, "evaluation": evaluation, "not_read": not_read}


def _dicom_without_pixels(path: Path) -> None:
    import pydicom
    from pydicom.uid import UltrasoundImageStorage

    from monai_ext.io.writers import new_dicom_dataset

    new_dicom_dataset(path, UltrasoundImageStorage).save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).get("PixelData") is None
