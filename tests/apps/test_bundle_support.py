"""Bundle support: the files a bundle's ``inference.yaml`` predicts on."""

from __future__ import annotations

import numpy as np
import pytest

from monai_ext.apps.bundle_support import inference_files
from monai_ext.io.writers import write_dicom, write_nifti
from tests.io.test_volumes import write_itk

IMAGE = (np.arange(32 * 48, dtype=np.uint8).reshape(32, 48) * 3) % 251


def _scan_folder(root):
    """A user's export folder: every single-image format the decoder reads, in sub-folders, plus files it must skip."""
    (root / "a" / "b").mkdir(parents=True)
    write_dicom(IMAGE, root / "a" / "scan.dcm")
    write_nifti(IMAGE, root / "a" / "b" / "volume.nii.gz")
    write_itk(IMAGE[None], root / "b_mode.nrrd")
    write_itk(IMAGE[None], root / "a" / "sweep.mha").rename(root / "a" / "sweep.MHA")  # suffixes match any case
    import cv2

    cv2.imwrite(str(root / "a" / "b" / "frame.png"), IMAGE)
    (root / "report.txt").write_text("not an image")
    (root / "loop.avi").write_bytes(b"cine loops only enter the corpus")
    (root / ".hidden.png").write_bytes(b"")
    return root


def test_input_dir_lists_every_format_the_loader_reads_and_nothing_else(tmp_path):
    found = inference_files(_scan_folder(tmp_path / "scans"), None)
    names = sorted(p.rsplit("/", 1)[1] for p in found)
    assert names == ["b_mode.nrrd", "frame.png", "scan.dcm", "sweep.MHA", "volume.nii.gz"]


def test_input_files_are_appended_and_nothing_given_is_refused(tmp_path):
    extra = str(tmp_path / "extra.png")
    assert inference_files(None, [extra]) == [extra]
    with pytest.raises(ValueError, match="--input_dir or --input_files"):
        inference_files(None, None)
