"""first_time: a note is said once per job, across the DataLoader workers forked anew at every epoch."""

from __future__ import annotations

import multiprocessing
import sys
import uuid
import warnings

import numpy as np
import pytest
import torch

from monai_ext.io.once import first_time


def test_a_note_is_new_once_and_other_notes_stay_new() -> None:
    note = f"{uuid.uuid4()}: a note"
    assert first_time(note) and not first_time(note) and first_time(note + " more")


def test_a_note_said_in_a_forked_process_is_not_new_in_the_next_or_in_this_one() -> None:
    """A training's DataLoader workers are forked anew at every epoch: what one said is known to the next."""
    note = f"{uuid.uuid4()}: said in a worker"
    said = []
    for _ in range(2):  # two epochs' workers, each telling by its exit status whether the note was new to it
        worker = multiprocessing.get_context("fork").Process(target=lambda: sys.exit(int(first_time(note))))
        worker.start()
        worker.join(timeout=60)
        said.append(worker.exitcode)
    assert said == [1, 0] and not first_time(note)


class _NonSquareDicoms(torch.utils.data.Dataset):
    """Reads the same DICOM of non-square pixels at every item, as an epoch reads a dataset."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        from monai_ext.io.images import read_image

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # what reaches the filters: the note itself decides whether it is said
            read_image(self.path)
        return sum("not square" in str(w.message) for w in caught)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_dicoms_resampling_note_is_said_once_over_epochs_of_workers(tmp_path, workers: int) -> None:
    """The note that a DICOM is read resampled to square pixels was said at every epoch, by each epoch's workers."""
    import pydicom

    from monai_ext.io.writers import write_dicom_frames

    path = tmp_path / "scan.dcm"
    write_dicom_frames(np.zeros((1, 40, 60), np.uint8), path)
    ds = pydicom.dcmread(path)
    ds.PixelAspectRatio = [2, 1]
    ds.save_as(path)
    loader = torch.utils.data.DataLoader(_NonSquareDicoms(str(path)), batch_size=None, num_workers=workers,
                                         **({"multiprocessing_context": "fork"} if workers else {}))
    assert sum(sum(loader) for _ in range(3)) == 1  # three epochs, two reads each


def test_a_file_s_notes_are_collected_though_said_before_in_the_job(tmp_path) -> None:
    """A corpus chunk keeps its files' notes under their names (collected_reader_warnings): an ingestion earlier in
    the process (a second prepare_corpus, a notebook) had said them, and the second chunk recorded none."""
    from PIL import Image

    from monai_ext.io.errors import collected_reader_warnings
    from monai_ext.io.images import read_image

    path = tmp_path / f"{uuid.uuid4()}.png"
    Image.fromarray(np.full((8, 8), 4000, np.uint16)).save(path)  # 12-bit data in a 16-bit picture
    for _ in range(2):
        with collected_reader_warnings() as notes:
            read_image(path)
        assert len(notes) == 1 and "16-bit" in notes[0]
    with warnings.catch_warnings(record=True) as shown:  # outside a collection: said once, as before
        warnings.simplefilter("always")
        read_image(path)
    assert not shown
