"""A file named in another Unicode form than the disk's (macOS writes names decomposed)."""

from __future__ import annotations

import unicodedata

from monai_ext.io.paths import unicode_twin

NFC, NFD = (unicodedata.normalize(form, "é") for form in ("NFC", "NFD"))


def test_a_name_and_a_folder_in_another_form_are_found_as_the_disk_spells_them(tmp_path) -> None:
    (tmp_path / f"r{NFD}sultats").mkdir()
    (tmp_path / f"r{NFD}sultats" / f"b{NFD}nin.png").write_bytes(b"png")
    assert unicode_twin(tmp_path / f"r{NFC}sultats" / f"b{NFC}nin.png") == \
        tmp_path / f"r{NFD}sultats" / f"b{NFD}nin.png"
    assert unicode_twin(str(tmp_path / f"r{NFC}sultats")) == tmp_path / f"r{NFD}sultats"


def test_a_path_spelled_as_on_disk_or_missing_in_every_form_has_no_twin(tmp_path) -> None:
    (tmp_path / f"{NFD}.png").write_bytes(b"png")
    assert unicode_twin(tmp_path / f"{NFD}.png") is None  # found as spelled
    assert unicode_twin(tmp_path / "e.png") is None
    assert unicode_twin(tmp_path / "absent" / f"{NFC}.png") is None


def test_two_files_that_differ_only_in_form_are_no_answer(tmp_path) -> None:
    """Linux keeps the spellings apart: which of two the list means cannot be told."""
    (tmp_path / f"{NFD}{NFD}.png").write_bytes(b"decomposed")
    (tmp_path / f"{NFC}{NFD}.png").write_bytes(b"mixed")
    assert unicode_twin(tmp_path / f"{NFC}{NFC}.png") is None
    (tmp_path / f"{NFC}{NFD}.png").unlink()
    assert unicode_twin(tmp_path / f"{NFC}{NFC}.png") == tmp_path / f"{NFD}{NFD}.png"
