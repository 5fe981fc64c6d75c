"""Image folders as datalists: files found through symbolic links (loops ended) and DICOM files without a suffix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_ext.data.folders import list_images, pretrain_datalists, walk_files
from monai_ext.data.synthetic import generate_dataset
from monai_ext.io.images import IMAGE_SUFFIXES, SINGLE_IMAGE_SUFFIXES
from monai_ext.io.writers import write_dicom

GRAY = np.random.default_rng(0).integers(0, 256, (12, 16), np.uint8)


def picture(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(GRAY).save(path)
    return path


def test_dicom_files_without_a_suffix_are_listed_where_dicom_is_wanted(tmp_path) -> None:
    """A DICOMDIR export (``DICOM/IM0001``) beside a picture and a text file without a suffix."""
    picture(tmp_path / "a.png")
    write_dicom(GRAY, tmp_path / "DICOM" / "IM0001")
    (tmp_path / "DICOM" / "README").write_text("not an image")
    assert list_images(tmp_path, SINGLE_IMAGE_SUFFIXES) == [tmp_path / "DICOM" / "IM0001", tmp_path / "a.png"]
    assert list_images(tmp_path, IMAGE_SUFFIXES) == [tmp_path / "a.png"]  # pictures only: no DICOM of any name


def test_a_folder_holding_only_a_dicom_without_a_suffix_is_not_empty(tmp_path) -> None:
    write_dicom(GRAY, tmp_path / "IM0001")
    assert list_images(tmp_path, SINGLE_IMAGE_SUFFIXES) == [tmp_path / "IM0001"]
    with pytest.raises(ValueError, match="no images"):
        list_images(tmp_path, IMAGE_SUFFIXES)


def test_symlinked_folders_are_followed_once_and_loops_end(tmp_path) -> None:
    study = tmp_path / "elsewhere" / "study"
    picture(study / "good.png")
    picture(study / "results" / "deep.png")
    (study / "results" / "loop").symlink_to(study, target_is_directory=True)  # a link back up the tree
    root = tmp_path / "input"
    picture(root / "own.png")
    (root / "study1").symlink_to(study, target_is_directory=True)
    (root / "study1_again").symlink_to(study, target_is_directory=True)  # a second link to the same folder
    found = [p.relative_to(root).as_posix() for p in list_images(root)]
    assert found == ["own.png", "study1/good.png", "study1/results/deep.png"]


def test_walk_files_leaves_hidden_files_out(tmp_path) -> None:
    picture(tmp_path / ".hidden.png")
    picture(tmp_path / "shown.png")
    assert list(walk_files(tmp_path)) == [tmp_path / "shown.png"]


@pytest.mark.parametrize("hidden", [".Trash-1000/files", ".thumbnails/normal", ".git/objects", "__MACOSX",
                                    "$Recycle.Bin/S-1-5-21-1", "RECYCLER/S-1-5-21-1", "System Volume Information",
                                    "@eaDir/a.png"])
def test_walk_files_leaves_hidden_folders_and_their_files_out(tmp_path, hidden: str) -> None:
    """A drive's trash (deleted images, evaluation ones among them; Windows's ``$Recycle.Bin`` keeps their suffixes),
    thumbnails, or the folder macOS's zip keeps its AppleDouble copies in (``__MACOSX``, whatever its files are
    named): none is data."""
    picture(tmp_path / hidden / "old.png")
    picture(tmp_path / hidden / "._shown.png")
    picture(tmp_path / "shown.png")
    assert list(walk_files(tmp_path)) == [tmp_path / "shown.png"]
    assert list(walk_files(tmp_path / hidden.split("/")[0])) == [tmp_path / hidden / "old.png"]  # asked for by name


@pytest.mark.parametrize("dataset_dir, setting", [(2024, None), ("2024", None), (2024.1, "dataset_dir"),
                                                  ("2024", "cache_dir")])
def test_a_dataset_folder_typed_as_a_number_is_read(dataset_dir, setting, tmp_path, monkeypatch) -> None:
    """``--dataset_dir 2024`` reaches the config as the int 2024; 2024.10 arrives as 2024.1 and is refused by name
    (its text is lost), as is a cache_dir that is not text."""
    from monai_ext.data.corpus import is_corpus_cache
    from monai_ext.data.folders import pretrain_datalists

    monkeypatch.chdir(tmp_path)
    for i in range(4):  # distinct pictures: byte-identical copies share a split group (one side)
        (tmp_path / "2024").mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(tmp_path / "2024" / f"{i}.png")
    cache_dir = 1.5 if setting == "cache_dir" else "cache"
    if setting is None:
        lists = pretrain_datalists(dataset_dir, cache_dir, val_fraction=0.25, seed=0)
        assert sorted(it["image"] for part in lists.values() for it in part) == [f"2024/{i}.png" for i in range(4)]
        assert is_corpus_cache(dataset_dir) is False
        return
    with pytest.raises(ValueError, match=rf"{setting} must be text \(a path or a name\), got float"):
        pretrain_datalists(dataset_dir if setting == "dataset_dir" else None, cache_dir)


def _pictures(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(folder / f"p{i}.png")


def test_pretraining_leaves_out_its_own_outputs_and_names_the_files_it_does_not_read(tmp_path, caplog) -> None:
    """Reconstruction grids written under the data folder were trained on at the next run (and reshuffled the
    split on resume); DICOM files, cine loops and volumes were passed over without a word."""
    data = tmp_path / "data"
    _pictures(data, 6)
    _pictures(data / "run" / "eval" / "reconstructions", 2)  # an earlier run's epoch_0001.png, latest.png
    write_dicom(np.zeros((8, 8), np.uint8), data / "IM0001")
    (data / "loop.mp4").write_bytes(b"x")
    with caplog.at_level("WARNING"):
        lists = pretrain_datalists(data, tmp_path / "cache", val_fraction=0.2, seed=0,
                                   exclude=[data / "run" / "eval", data / "run" / "models", None])
    names = sorted(Path(it["image"]).name for part in lists.values() for it in part)
    assert names == [f"p{i}.png" for i in range(6)]
    assert "2 picture(s) under" in caplog.text and "are not trained on" in caplog.text
    assert "2 file(s) under" in caplog.text and "(no suffix) 1" in caplog.text and "prepare-corpus" in caplog.text


def test_a_generated_folders_own_record_is_no_passed_over_file(tmp_path, caplog) -> None:
    """Every pretraining on a generated folder (the bundle's default, or `synthesize`'s) warned of its synthetic.json
    and sent the user to prepare-corpus; a JSON file of the user's own is still named."""
    data = tmp_path / "data"
    generate_dataset(data, num=6, seed=0)
    with caplog.at_level("WARNING", logger="monai_ext.data.folders"):
        pretrain_datalists(data, tmp_path / "cache", val_fraction=0.2, seed=0)
        assert not caplog.records
        (data / "sub").mkdir()
        (data / "sub" / "synthetic.json").write_text("{}")
        pretrain_datalists(data, tmp_path / "cache", val_fraction=0.2, seed=0)
    assert "1 file(s) under" in caplog.text and "(.json 1)" in caplog.text


def test_hidden_pictures_are_counted_in_the_passed_over_files_warning(tmp_path, caplog) -> None:
    """A folder copied off a Mac holds a ``._`` AppleDouble copy of each picture: they were left out without a word,
    and the user counted more pictures than were trained on. ``.DS_Store`` (in every such folder) is not named."""
    data = tmp_path / "data"
    _pictures(data, 4)
    for name in ("._p0.png", "._p1.png", "sub/.p9.PNG", ".DS_Store"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(b"\x00\x05\x16\x07")  # AppleDouble magic: no picture
    with caplog.at_level("WARNING", logger="monai_ext.data.folders"):
        lists = pretrain_datalists(data, tmp_path / "cache", val_fraction=0.25, seed=0)
        assert sorted(Path(it["image"]).name for part in lists.values() for it in part) == \
            [f"p{i}.png" for i in range(4)]
        said = [r.getMessage() for r in caplog.records]
        assert said == [f"{data}: 3 hidden file(s) (names starting with '.') left out ('._' ones are macOS metadata, "
                        "not images), e.g. '._p0.png', '._p1.png', '.p9.PNG'"], said
        caplog.clear()
        (data / "notes.txt").write_text("x")  # the same warning as the other files passed over
        pretrain_datalists(data, tmp_path / "cache", val_fraction=0.25, seed=0)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("1 file(s) under") and said[0].endswith(
        "; 3 hidden file(s) (names starting with '.') left out ('._' ones are macOS metadata, not images), e.g. "
        "'._p0.png', '._p1.png', '.p9.PNG'"), said


def test_a_folder_of_hidden_pictures_only_says_so(tmp_path) -> None:
    """Every picture hidden (an export tool's, or ``._`` copies alone) read as a folder without images."""
    picture(tmp_path / ".scan.png")
    with pytest.raises(ValueError, match=r"no images .* found under .*; 1 hidden file\(s\) \(names starting with "
                                         r"'\.'\) left out, e.g. '\.scan\.png'$"):
        list_images(tmp_path)


@pytest.mark.parametrize("count, val_fraction, message", [
    (1, 0.1, "holds 1 training image(s): pretraining holds part of them out for its validation loss and needs at "
             "least 2"),
    (5, 0.0, "val_fraction must be in (0, 1): the validation loss chooses the best model, got 0.0"),
    (5, 1.0, "val_fraction must be in (0, 1)"),
])
def test_too_few_pictures_or_no_validation_share_is_said_plainly(tmp_path, count, val_fraction, message) -> None:
    """Both ended in 'the datalist is empty', naming neither the folder nor the setting."""
    _pictures(tmp_path / "data", count)
    with pytest.raises(ValueError) as raised:
        pretrain_datalists(tmp_path / "data", tmp_path / "cache", val_fraction=val_fraction)
    assert message in str(raised.value)


def test_a_folder_of_no_pictures_says_what_it_holds(tmp_path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.mp4").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"no images \(.*\) found under .* \(it holds 2 other file\(s\): .mp4 2\)"):
        list_images(tmp_path)


@pytest.mark.parametrize("seed", [0, 42])
def test_the_pretraining_split_keeps_every_source_on_its_side_when_the_data_grows(tmp_path, seed) -> None:
    """The split was a permutation of all items: 1000 -> 1001 pictures moved about 68 of 100 validation pictures
    into training, so evaluate and resume scored pictures training had seen."""
    from monai_ext.data.folders import split_by_source

    names = [f"site/{i:04d}.png" for i in range(1000)]
    train, val = split_by_source(names, names, 0.1, seed)
    grown = names + [f"new/{i:04d}.png" for i in range(100)]
    train2, val2 = split_by_source(grown, grown, 0.1, seed)
    assert set(val) <= set(val2) and set(train) <= set(train2)
    assert 70 <= len(val) <= 130 and not set(train) & set(val)


def test_frames_of_one_source_never_fall_on_both_sides() -> None:
    from monai_ext.data.folders import source_group, split_by_source

    sources = [source_group(f"loop{i // 6}.mp4", i % 6) for i in range(60)]  # 10 cine loops of 6 frames
    items = list(range(60))
    train, val = split_by_source(items, sources, 0.2, 0)
    assert val and not {sources[i] for i in train} & {sources[i] for i in val}
    assert len({s.rsplit("#", 1)[0] for s in sources}) == 10 == len(set(sources))


@pytest.mark.parametrize("seed", range(20))
def test_a_long_loop_beside_a_few_pictures_is_split_in_stretches_not_held_out_whole(seed) -> None:
    """One 600-frame loop and two pictures: the loop was one group, held out whole for a third of the seeds (the
    model then trained on 2 frames); and per-frame draws for a one-source corpus turned into per-source draws when a
    file was added, moving trained frames into validation."""
    from monai_ext.data.folders import FRAMES_PER_GROUP, source_group, split_by_source

    loop = [source_group("clinic/loop.avi", f) for f in range(600)]
    sources = loop + [source_group("clinic/a.png"), source_group("clinic/b.png")]
    train, val = split_by_source(range(602), sources, 0.1, seed)
    assert len(train) >= FRAMES_PER_GROUP and val  # never the 2 pictures alone; a large share is warned about
    alone_train, _ = split_by_source(range(600), loop, 0.1, seed)  # the loop before the pictures came
    assert not set(alone_train) & set(val)  # nothing trained on moves into validation


def test_a_tiny_share_still_holds_out_a_group_and_a_large_held_out_share_is_warned(caplog) -> None:
    from monai_ext.data.folders import split_by_source

    for seed in range(6):  # no draw below 1e-9: the lowest-drawn group validates, "a" (9 of 10) for some seeds
        caplog.clear()
        with caplog.at_level("WARNING"):
            train, val = split_by_source(range(10), ["a"] * 9 + ["b"], 1e-9, seed)
        assert train and val and sorted(train + val) == list(range(10))
        assert ("held out for validation, not about" in caplog.text) == (len(val) == 9)


def test_pictures_all_from_one_stretch_of_one_file_are_refused(tmp_path) -> None:
    from monai_ext.data.corpus import CorpusOptions, prepare_corpus
    from monai_ext.data.folders import pretrain_datalists
    from monai_ext.io.writers import write_dicom_frames

    write_dicom_frames(np.random.default_rng(1).integers(0, 255, (5, 48, 64), np.uint8), tmp_path / "r" / "a" / "x.dcm")
    prepare_corpus(tmp_path / "r", tmp_path / "cache", CorpusOptions(size=32, deannotate=False, dedup_threshold=-1))
    with pytest.raises(ValueError, match=r"come from one stretch of one source file \('a/x.dcm'\)"):
        pretrain_datalists(tmp_path / "cache", tmp_path / "c", val_fraction=0.2)


@pytest.mark.parametrize("fraction", [0.001, 0.999])
def test_each_side_gets_at_least_one_source(fraction) -> None:
    from monai_ext.data.folders import split_by_source

    names = [f"{i}.png" for i in range(5)]
    train, val = split_by_source(names, names, fraction, 0)
    assert train and val and sorted(train + val) == names


def test_a_corpus_cache_is_split_by_the_files_its_frames_come_from(tmp_path) -> None:
    """A multi-frame DICOM's frames went to both sides (consecutive frames are nearly alike)."""
    from monai_ext.data.corpus import CorpusOptions, kept_sources, prepare_corpus
    from monai_ext.data.folders import pretrain_datalists
    from monai_ext.io.writers import write_dicom_frames

    rng = np.random.default_rng(0)
    for i in range(6):
        write_dicom_frames(rng.integers(0, 255, (4, 48, 64), np.uint8), tmp_path / "root" / "site" / f"loop{i}.dcm")
    prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=32, deannotate=False, dedup_threshold=-1))
    sources = kept_sources(tmp_path / "cache")
    lists = pretrain_datalists(tmp_path / "cache", tmp_path / "c", val_fraction=0.3, seed=1)
    train = {sources[it["image"]][0] for it in lists["train"]}
    val = {sources[it["image"]][0] for it in lists["validation"]}
    assert train and val and not train & val and len(train | val) == 6


def test_a_held_out_share_far_below_val_fraction_is_warned(caplog) -> None:
    """Two 64-frame loops and a picture: some seeds hold out the picture alone, 1 of 129 images."""
    from monai_ext.data.folders import source_group, split_by_source

    sources = [source_group(f"loop{k}.avi", f) for k in range(2) for f in range(64)] + [source_group("a.png")]
    for seed in range(8):
        caplog.clear()
        with caplog.at_level("WARNING"):
            _, val = split_by_source(range(129), sources, 0.1, seed)
        assert ("held out for validation, not about 10%" in caplog.text) == (len(val) in (1, 64, 65, 128))


@pytest.mark.parametrize("listed", ["é1.JPG", "É1.jpg", "é1.jpg"])
def test_file_in_any_case_finds_a_name_in_another_unicode_form(tmp_path, listed) -> None:
    """MMOTU's and GIST514's lists name their images; macOS writes "é" decomposed (NFD) where the list has it
    composed (NFC), and the image read as missing, without a hint."""
    import unicodedata

    from monai_ext.data.folders import file_in_any_case

    on_disk = tmp_path / unicodedata.normalize("NFD", "é1.jpg")
    on_disk.write_bytes(b"jpeg")
    assert file_in_any_case(tmp_path / unicodedata.normalize("NFC", listed)) == on_disk
    assert file_in_any_case(tmp_path / "e1.jpg") == tmp_path / "e1.jpg"  # no accent is no other form: missing


def _distinct_pictures(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(folder / f"scan {i:02d}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (8, 8), np.uint8)).save(paths[-1])
    return paths


def _sides(lists: dict) -> dict[str, str]:
    return {Path(it["image"]).name: part for part, items in lists.items() for it in items}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_byte_identical_copies_fall_on_one_side_and_the_other_pictures_keep_theirs(tmp_path, seed) -> None:
    """10 pictures and a "... copy.png" of each: 3 of 5 validation pictures had their copy in training (an
    optimistic val_loss); the copies now follow their first copy, and nothing else moves."""
    import shutil

    originals = _distinct_pictures(tmp_path / "data", 10)
    before = _sides(pretrain_datalists(tmp_path / "data", tmp_path / "cache", val_fraction=0.3, seed=seed))
    for path in originals:
        shutil.copyfile(path, path.with_name(f"{path.stem} copy.png"))
    after = _sides(pretrain_datalists(tmp_path / "data", tmp_path / "cache", val_fraction=0.3, seed=seed))
    assert len(after) == 20
    for path in originals:
        assert after[f"{path.stem} copy.png"] == after[path.name], path.name
    assert {name: after[name] for name in before} == before  # the originals kept their sides


def test_a_folder_without_copies_splits_as_before(tmp_path) -> None:
    """Existing users' splits must not change: the split of a folder without copies is the hash split of its
    relative paths."""
    from monai_ext.data.folders import source_group, split_by_source

    paths = _distinct_pictures(tmp_path / "data", 12)
    lists = pretrain_datalists(tmp_path / "data", tmp_path / "cache", val_fraction=0.25, seed=42)
    names = [p.name for p in paths]
    train, val = split_by_source(names, [source_group(n) for n in names], 0.25, 42)
    assert [Path(it["image"]).name for it in lists["train"]] == train
    assert [Path(it["image"]).name for it in lists["validation"]] == val


def test_files_that_cannot_be_pictures_are_left_out_before_the_split(tmp_path, caplog) -> None:
    """A zero-byte or text "picture" took part in the split and could be the whole validation part, which stopped
    the run with "none of the 1 items of the dataset can be read"."""
    from monai_ext.io.writers import write_dicom

    _distinct_pictures(tmp_path / "data", 6)
    (tmp_path / "data" / "zero.png").write_bytes(b"")
    (tmp_path / "data" / "empty.jpg").write_bytes(b"")
    (tmp_path / "data" / "notes.png").write_text("not a picture")
    write_dicom(GRAY, tmp_path / "data" / "export.png")  # a DICOM under a picture's name: the loader reads it
    with caplog.at_level("WARNING", logger="monai_ext.data.folders"):
        lists = pretrain_datalists(tmp_path / "data", tmp_path / "cache", val_fraction=0.25, seed=0)
    names = sorted(_sides(lists))
    assert names == sorted([f"scan {i:02d}.png" for i in range(6)] + ["export.png"])
    warnings = [r.getMessage() for r in caplog.records if "cannot be pictures" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, with counts and examples
    assert "3 of 10 picture file(s)" in warnings[0] and "empty file (0 bytes) 2" in warnings[0]
    assert "not a picture PIL recognises" in warnings[0] and "zero.png: empty file (0 bytes)" in warnings[0]


def test_a_folder_left_with_one_picture_after_the_screening_says_so(tmp_path) -> None:
    _distinct_pictures(tmp_path / "data", 1)
    (tmp_path / "data" / "zero.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"holds 1 training image\(s\) \(1 more cannot be pictures"):
        pretrain_datalists(tmp_path / "data", tmp_path / "cache", val_fraction=0.25)


def test_the_synthetic_default_is_the_same_whatever_the_data_seed(tmp_path) -> None:
    """--data_seed draws the validation share only; the README said it drew the synthetic default too."""
    readme = (Path(__file__).resolve().parents[2] / "bundles" / "usf_mae_pretrain" / "docs" / "README.md").read_text()
    assert "the synthetic default and the validation share" not in readme
    assert "the synthetic default is always generated with seed 0" in readme
    parts = [pretrain_datalists(None, tmp_path / "cache", num_synthetic=4, val_fraction=0.25, seed=seed)
             for seed in (1, 2)]
    assert [sorted(it["image"] for part in p.values() for it in part) for p in parts][0] == \
        sorted(it["image"] for part in parts[1].values() for it in part)
    assert {Path(it["image"]).parent.name for it in parts[0]["train"]} == {"synthetic_4_seed0"}


@pytest.mark.parametrize("pictures, copies", [(1, 0), (1, 2), (3, 0)])
def test_an_archive_scored_whole_needs_no_split(tmp_path, pictures, copies) -> None:
    """``held_out=False`` (the pretraining ``evaluate --eval_split all``): one picture, or copies of one, are a set to
    score; split as training splits, they were refused ("needs at least 2", "byte-identical copies")."""
    folder = tmp_path / "data"
    _distinct_pictures(folder, pictures)
    first = sorted(folder.iterdir())[0]
    for i in range(copies):
        (folder / f"copy {i}.png").write_bytes(first.read_bytes())
    lists = pretrain_datalists(folder, tmp_path / "cache", held_out=False)
    names = sorted(p.name for p in folder.iterdir())
    assert lists["train"] == [] and [Path(item["image"]).name for item in lists["validation"]] == names
    if pictures == 1:
        with pytest.raises(ValueError, match="holds 1 training image|byte-identical copies"):
            pretrain_datalists(folder, tmp_path / "cache", val_fraction=0.5)  # what training asks: refused


def test_an_archive_of_no_readable_picture_scored_whole_is_refused(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "zero.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"holds no image to evaluate \(1 more cannot be pictures"):
        pretrain_datalists(tmp_path / "data", tmp_path / "cache", held_out=False)


def test_names_in_another_case_are_found_with_one_listing_of_their_folder(tmp_path, monkeypatch) -> None:
    """A sheet naming N files in another case than the disk's listed their folder once per row (N^2: 25 s for 4000
    rows); one listing serves them all, and a file renamed since is still found (a new listing where the old one
    fails)."""
    import os
    from pathlib import Path

    from monai_ext.data.folders import file_in_any_case

    for i in range(40):
        (tmp_path / f"case_{i}.png").write_bytes(b"x")
    changed = tmp_path.stat().st_mtime_ns - 10**10  # ten seconds ago: a listing made now is kept
    os.utime(tmp_path, ns=(changed, changed))
    listings = []
    real = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: listings.append(self) or real(self))
    assert all(file_in_any_case(tmp_path / f"case_{i}.PNG") == tmp_path / f"case_{i}.png" for i in range(40))
    assert len(listings) == 1
    (tmp_path / "case_0.png").rename(tmp_path / "CASE_0.Png")
    assert file_in_any_case(tmp_path / "case_0.PNG") == tmp_path / "CASE_0.Png"


def test_names_in_another_case_cost_one_listing_however_they_are_listed(tmp_path, monkeypatch) -> None:
    """unicode_twin (os.listdir) listed the folder for every row as well, and a missing name listed it again each
    time: N^2 still. A folder changed since its listing is listed again: a twin made since makes the name ambiguous."""
    import os
    from pathlib import Path

    from monai_ext.data.folders import file_in_any_case

    for i in range(40):
        (tmp_path / f"case_{i}.png").write_bytes(b"x")
    changed = tmp_path.stat().st_mtime_ns - 10**10  # ten seconds ago: a listing made now is kept
    os.utime(tmp_path, ns=(changed, changed))
    listings = []
    real_iterdir, real_listdir = Path.iterdir, os.listdir
    monkeypatch.setattr(Path, "iterdir", lambda self: listings.append(self) or real_iterdir(self))
    monkeypatch.setattr(os, "listdir", lambda path=".": listings.append(Path(path)) or real_listdir(path))
    assert file_in_any_case(tmp_path / "case_0.PNG") == tmp_path / "case_0.png"
    first = listings.count(tmp_path)  # one listing (Path.iterdir may go through os.listdir)
    assert all(file_in_any_case(tmp_path / f"case_{i}.PNG") == tmp_path / f"case_{i}.png" for i in range(40))
    assert all(file_in_any_case(tmp_path / f"gone_{i}.png") == tmp_path / f"gone_{i}.png" for i in range(40))
    assert 0 < first <= 2 and listings.count(tmp_path) == first
    (tmp_path / "CASE_1.PNG").write_bytes(b"y")
    os.utime(tmp_path, ns=(0, tmp_path.stat().st_mtime_ns + 1))  # a clock coarser than the test: changed all the same
    assert file_in_any_case(tmp_path / "Case_1.png") == tmp_path / "Case_1.png"  # two candidates: none chosen


def test_a_listing_made_within_a_clock_tick_of_the_folders_change_is_not_kept(tmp_path) -> None:
    """A file renamed in the same tick of the folder's clock as the listing (FAT's 2 s) leaves the folder's stamp as
    it was: a kept listing would miss it. A folder changed moments before is listed again at every look."""
    import os

    from monai_ext.data.folders import file_in_any_case

    (tmp_path / "scan.png").write_bytes(b"x")
    stamp = tmp_path.stat().st_mtime_ns
    assert file_in_any_case(tmp_path / "SCAN.PNG") == tmp_path / "scan.png"
    (tmp_path / "scan.png").rename(tmp_path / "Scan.Png")
    os.utime(tmp_path, ns=(stamp, stamp))  # the rename within the same tick: the stamp unchanged
    assert file_in_any_case(tmp_path / "SCAN.PNG") == tmp_path / "Scan.Png"
