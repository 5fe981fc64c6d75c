"""SkipCorruptDataset: an evaluation list drops unreadable files (each good image once, the bad ones listed with their
reason, on any number of ranks); a training list replaces them by the next good one."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.data import DataLoader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, OneOf, RandFlipd, ScaleIntensityd

from monai_ext.data.datasets import SkipCorruptDataset, is_random_transform
from monai_ext.engines.distributed import UnpaddedShardSampler
from tests.data.unreadable import BAD, image_folder, load


def loaded_ids(loader) -> list[str]:
    return [name for batch in loader for name in batch["id"]]


def test_evaluation_drops_unreadable_files_and_lists_them_with_the_reason(tmp_path) -> None:
    items = image_folder(tmp_path)
    dataset = SkipCorruptDataset(items, load(), evaluation=True)
    ids = loaded_ids(DataLoader(dataset, batch_size=3, shuffle=False))
    assert ids == [f"case{i}" for i in range(8)]  # each good image once, in datalist order; no substitute
    assert len(dataset) == 8
    # each image is itself, not a neighbour standing in for a bad one
    assert [int(dataset[i]["image"].max()) for i in range(8)] == list(range(8))
    assert sorted(Path(s["image"]).name for s in dataset.skipped) == sorted(BAD)
    reasons = {Path(s["image"]).name: s["reason"] for s in dataset.skipped}
    assert all(reason.split(":")[0].endswith(("Error", "Exception")) for reason in reasons.values()), reasons
    assert "No such file" in reasons["missing.png"] or "missing.png" in reasons["missing.png"]


@pytest.mark.parametrize("world", [2, 3, 5])
def test_evaluation_shards_cover_every_good_image_once(tmp_path, world: int) -> None:
    """Every rank screens the same list, so unpadded shards of uneven size split exactly the good images."""
    items = image_folder(tmp_path)
    per_rank = []
    for rank in range(world):
        dataset = SkipCorruptDataset(items, load(), evaluation=True)
        sampler = UnpaddedShardSampler(dataset, num_replicas=world, rank=rank)
        per_rank.append(loaded_ids(DataLoader(dataset, batch_size=2, sampler=sampler)))
        assert len(dataset.skipped) == len(BAD)  # the whole list on each rank: no gather needed for the report
    flat = [name for shard in per_rank for name in shard]
    assert sorted(flat) == sorted(f"case{i}" for i in range(8)) and len(set(flat)) == len(flat)


def test_evaluation_with_loader_workers_counts_each_good_image_once(tmp_path) -> None:
    """Screening happens in the main process, so worker processes never meet a bad file."""
    dataset = SkipCorruptDataset(image_folder(tmp_path), load(), evaluation=True)
    assert sorted(loaded_ids(DataLoader(dataset, batch_size=3, num_workers=2))) == [f"case{i}" for i in range(8)]


def test_training_replaces_an_unreadable_file_by_the_next_good_one(tmp_path) -> None:
    items = image_folder(tmp_path)
    dataset = SkipCorruptDataset(items, load(random=True))
    assert not dataset.evaluation and len(dataset) == len(items)
    ids = [dataset[i]["id"] for i in range(len(items))]
    assert ids[1] == items[2]["id"]  # empty.png (position 1) stands in as case1, the next good item
    assert set(ids) == {f"case{i}" for i in range(8)} and len(dataset.skipped) == len(BAD)


def test_training_reports_each_unreadable_file_once_however_many_epochs(tmp_path, caplog) -> None:
    """A training process met the same bad files every epoch: each was decoded again, warned of again and listed
    again in ``skipped``, so the report of a 100-epoch run listed every bad file 100 times."""
    items = image_folder(tmp_path)
    dataset = SkipCorruptDataset(items, load(random=True))
    with caplog.at_level("WARNING", logger="monai_ext.data.datasets"):
        for _ in range(3):  # three epochs in one process
            ids = [dataset[i]["id"] for i in range(len(items))]
            assert set(ids) == {f"case{i}" for i in range(8)}
    assert sorted(Path(s["image"]).name for s in dataset.skipped) == sorted(BAD)
    assert caplog.text.count("skipping unreadable image") == len(BAD)


def test_a_file_that_breaks_after_the_screening_raises_naming_it(tmp_path) -> None:
    items = image_folder(tmp_path)
    dataset = SkipCorruptDataset(items, load(), evaluation=True)
    Path(items[0]["image"]).write_bytes(b"")
    with pytest.raises(RuntimeError, match="case0.png was readable when the evaluation started"):
        dataset[0]


def test_an_evaluation_list_without_a_readable_file_is_refused(tmp_path) -> None:
    items = [item for item in image_folder(tmp_path) if item["id"] in BAD]
    with pytest.raises(ValueError, match="none of the 3 items .* can be read .*empty.png"):
        SkipCorruptDataset(items, load(), evaluation=True)
    with pytest.raises(ValueError, match="the datalist is empty"):
        SkipCorruptDataset([], load())


@pytest.mark.parametrize(("transform", "random"), [
    (None, False),
    (load(), False),
    (load(random=True), True),
    ([LoadImaged("image"), ScaleIntensityd("image")], False),
    (Compose([LoadImaged("image"), Compose([RandFlipd("image", prob=0.5)])]), True),  # nested chains are searched
    (OneOf([ScaleIntensityd("image"), EnsureChannelFirstd("image")]), True),  # chooses at random
])
def test_augmentation_decides_training_unless_told(tmp_path, transform, random: bool) -> None:
    assert is_random_transform(transform) is random
    items = image_folder(tmp_path)
    assert SkipCorruptDataset(items, load(random), evaluation=None).evaluation is not random
    assert SkipCorruptDataset(items, load(random), evaluation=not random).evaluation is not random
    assert SkipCorruptDataset(items, load(random=True), evaluation=True).evaluation  # explicit wins


def test_a_part_without_a_readable_file_is_named_with_what_to_do(tmp_path) -> None:
    """"none of the 1 items of the dataset can be read" named neither the part left empty nor what to do."""
    items = [item for item in image_folder(tmp_path) if item["id"] == "empty.png"]
    with pytest.raises(ValueError, match=r"none of the 1 items of the validation part can be read \(.*empty.png.*\); "
                                         r"remove them"):
        SkipCorruptDataset(items, load(), evaluation=True, part="the validation part", remedy="remove them")


def test_first_readable_reads_in_order_only_until_it_has_enough(tmp_path) -> None:
    """A grid of two pictures decoded every file of the folder first; now the reading stops at the second good one,
    skipping a bad one on the way."""
    from monai_ext.data.datasets import first_readable

    items = image_folder(tmp_path)  # case0, empty.png, case1, case2, ...
    read: list[str] = []
    chain = load()

    def counting(item):
        read.append(str(item["id"]))
        return chain(item)

    images = first_readable(items, counting, 2)
    assert images.shape == (2, 1, 16, 16) and [int(im.max()) for im in images] == [0, 1]
    assert read == ["case0", "empty.png", "case1"]
    with pytest.raises(ValueError, match="none of the 3 items can be read"):
        first_readable([item for item in items if item["id"] in BAD], load(), 2)
