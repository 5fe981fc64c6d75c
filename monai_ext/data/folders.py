"""Image folders as MONAI datalists, the synthetic default, and a dataset that survives corrupt files."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from monai_ext.data.synthetic import GENERATION_RECORD, SimulatorConfig, generate_dataset
from monai_ext.io.images import IMAGE_SUFFIXES, image_stem, matches_suffixes
from monai_ext.io.paths import unicode_twin
from monai_ext.io.settings import path_setting, setting_text

logger = logging.getLogger(__name__)


#: Folders that hold no data of the archive: macOS's zip keeps resource forks in ``__MACOSX`` (``._name`` copies);
#: Windows keeps deleted files, suffixes and all, in ``$RECYCLE.BIN`` (``RECYCLER`` before Vista) on an NTFS or exFAT
#: drive, as Linux does in ``.Trash-1000``, and its own records in ``System Volume Information``. A Synology NAS
#: writes thumbnails of every picture into an ``@eaDir`` folder beside it (``@eaDir/a.png/SYNOPHOTO_THUMB_M.jpg``):
#: read as images, a copy taken off such a drive doubled its classes, with a thumbnail of each test image trained on.
ARCHIVE_METADATA_FOLDERS = frozenset({"__MACOSX", "$RECYCLE.BIN", "RECYCLER", "System Volume Information", "@eaDir"})
_METADATA_FOLDERS_UPPER = frozenset(name.upper() for name in ARCHIVE_METADATA_FOLDERS)
#: BUSI-style mask names: the image stem plus ``_mask`` or ``_mask_<k>``.
BUSI_MASK = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<k>\d+))?$")


def is_hidden_name(name: str) -> bool:
    """Whether a file or folder name is one that readers pass over: hidden (``.Trash-1000``, ``._name``) or an
    archiver's metadata folder (:data:`ARCHIVE_METADATA_FOLDERS`)."""
    return name.startswith(".") or name.upper() in _METADATA_FOLDERS_UPPER  # Windows names ignore case


def walk_files(root: str | os.PathLike, exclude: Sequence[str | os.PathLike] = (),
               hidden: list[Path] | None = None) -> Iterator[Path]:
    """Every file under ``root`` (paths as reached, under ``root``), following symbolic links to folders: each real
    folder is entered once, so a link back up the tree (a loop) or two links to one folder cannot repeat files.
    Folders in ``exclude`` (that exist) are never entered, by whatever path or link they are reached (an output
    folder inside the root: a rerun must not read its own cache and figures as data).
    Hidden files and folders below ``root`` are left out (a drive's ``.Trash-1000`` holds deleted images, evaluation
    ones among them; ``.thumbnails`` copies; ``._name`` macOS metadata), and so is an unzipped ``__MACOSX``. Folders
    in sorted order, files sorted within each. Where ``hidden`` is given, the hidden files of the folders walked are
    appended to it, for a caller to count what it passed over (a hidden folder is not entered, so its files are not).

    ``Path.rglob`` is not used: before Python 3.13 it does not follow links to folders, and a study folder linked
    into a dataset (``study1 -> /data/exports/study1``) would be skipped without a word.
    """
    seen = {(stat.st_dev, stat.st_ino) for stat in (os.stat(f) for f in exclude if os.path.isdir(f))}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        stat = os.stat(dirpath)
        if (stat.st_dev, stat.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirnames[:] = sorted(name for name in dirnames if not is_hidden_name(name))  # in place: os.walk prunes
        for name in sorted(filenames):
            if not is_hidden_name(name):
                yield Path(dirpath) / name
            elif hidden is not None:
                hidden.append(Path(dirpath) / name)


def list_images(folder: str | os.PathLike, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """All image files under ``folder``, sorted: recursive through symbolic links to folders (:func:`walk_files`),
    case-insensitive suffixes matched on the whole name (``.nii.gz`` works), hidden files skipped. Where
    ``suffixes`` hold a DICOM one, DICOM files named without a known suffix (``IM0001``, ``US0001.IMA``) are found
    by their content."""
    return list_images_and_others(folder, suffixes)[0]


def list_images_and_others(folder: str | os.PathLike, suffixes: Sequence[str] = IMAGE_SUFFIXES,
                           hidden: list[Path] | None = None) -> tuple[list[Path], list[Path]]:
    """(:func:`list_images`, the other files under ``folder``, hidden ones left out), from one walk: what a run
    passes over is said, not dropped in silence. A generated set's own record (``synthetic.json`` at the top, which
    ``synthesize`` writes beside its frames) is no passed-over file: every run on such a folder warned of it.

    Args:
        folder: the dataset folder.
        suffixes: the image suffixes listed.
        hidden: where given, the hidden files named as images (``._IMG_0001.png``: macOS's AppleDouble copies of a
            folder copied off a Mac) are appended to it, sorted, for the caller's warning
            (:func:`hidden_files_text`); other hidden files (``.DS_Store``, in every such folder) are not.

    Raises:
        ValueError: ``folder`` is not a folder, or holds no image (counting its hidden image files, if any: all of
            a folder's images hidden would otherwise read as an empty folder).
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"dataset folder {str(root)!r} does not exist or is not a folder")
    wanted = tuple(sorted({s.lower() for s in suffixes}))
    images, others, passed_over = [], [], []
    for path in walk_files(root, hidden=passed_over):
        if path.is_file() and path != root / GENERATION_RECORD:
            (images if matches_suffixes(path, wanted) else others).append(path)
    # by name only: a hidden file is not opened (its content is no reason to read it, AppleDouble ones are no image)
    named_as_images = sorted(p for p in passed_over if p.name.lower().endswith(wanted))
    if not images:
        held = f" (it holds {len(others)} other file(s): {suffix_counts(others)})" if others else ""
        hid = f"; {hidden_files_text(named_as_images)}" if named_as_images else ""
        raise ValueError(f"no images ({', '.join(sorted(wanted))}) found under {str(root)!r}{held}{hid}")
    if hidden is not None:
        hidden.extend(named_as_images)
    return sorted(images), sorted(others)


def hidden_files_text(hidden: Sequence[Path]) -> str:
    """``3 hidden file(s) (names starting with '.') left out, e.g. '._scan.png'``, for the warning that counts the
    files a run passes over (``._`` names are macOS metadata copies, said so, as they are the common case)."""
    apple = " ('._' ones are macOS metadata, not images)" if any(p.name.startswith("._") for p in hidden) else ""
    return (f"{len(hidden)} hidden file(s) (names starting with '.') left out{apple}, e.g. "
            f"{', '.join(repr(p.name) for p in hidden[:3])}")


def without_masks(paths: Sequence[Path], folder: str | os.PathLike, role: str = "class images",
                  hint: str = "`make-datalist busi` reads them as masks") -> list[Path]:
    """``paths`` less the lesion masks saved beside their images (BUSI's ``benign (1)_mask.png`` next to
    ``benign (1).png``), with a warning: a class folder of BUSI is images and masks, and a mask counted as an image
    of its class would put an outline of the answer into training and test; a folder to predict on would have its
    ground truth segmented and classified as scans.

    In a folder where masks sit beside their images, a ``_mask`` file whose image is gone (a duplicate image
    deleted, its mask kept) is a mask too, and is named in a second warning. A ``_mask`` name in a folder with no
    such pairs is an image like any other.

    Args:
        paths: the images found, in any folders (pairs are looked for within each file's own folder).
        folder: the folder searched, for the warnings.
        role: what the masks are not, for the warning (``"class images"``, ``"scans to predict"``).
        hint: where such masks are read as masks, for the warning.
    """
    stems = {(p.parent, image_stem(p)) for p in paths}
    named = {p: m["stem"] for p in paths if (m := BUSI_MASK.match(image_stem(p)))}
    paired = [p for p, stem in named.items() if (p.parent, stem) in stems]
    if paired:
        logger.warning("%s: %d mask file(s) beside their images (<image>_mask.png, as BUSI ships them) are not "
                       "%s and are left out, e.g. %s; %s", folder, len(paired), role, paired[0].name, hint)
    with_pairs = {p.parent for p in paired}
    lone = [p for p, stem in named.items() if (p.parent, stem) not in stems and p.parent in with_pairs]
    if lone:
        logger.warning("%s: %d mask file(s) have no image beside them and are left out as masks, not images: %s",
                       folder, len(lone), ", ".join(p.name for p in lone[:5]))
    left_out = set(paired) | set(lone)
    return [p for p in paths if p not in left_out]


def file_in_any_case(path: Path) -> Path:
    """``path``, or the one file beside it whose name differs only in case (``1.jpg`` for the listed ``1.JPG``: an
    archive unpacked on Windows or macOS, or renamed by a tool) or Unicode form (``é`` decomposed on disk, as macOS
    writes it, composed in the list: :func:`~monai_ext.io.paths.unicode_twin`), or both, in its folder or in the one
    folder whose name differs so (:func:`folder_in_any_case`); ``path`` itself where none is, for the caller's
    missing-file error."""
    if path.is_file():
        return path
    if not path.parent.is_dir():  # a folder along the path spelled in another form (the name itself is below)
        twin = unicode_twin(path)
        if twin is not None and twin.is_file():
            return twin
    folder = folder_in_any_case(path.parent)
    if not folder.is_dir():
        return path
    # the folder's one listing (unicode_twin listed it again for every row: N^2 over a sheet of N rows); of twins
    # that differ in case, the one in the list's case but another Unicode form, as unicode_twin chose it
    found = _entries_in_any_case(folder, path.name, Path.is_file)
    if len(found) > 1:
        wanted = unicodedata.normalize("NFC", path.name)
        found = [p for p in found if unicodedata.normalize("NFC", p.name) == wanted] or found
    return found[0] if len(found) == 1 else path


def folder_in_any_case(path: Path) -> Path:
    """``path``, or the one folder beside it whose name differs only in case or Unicode form (``images/`` for
    BUS-BRA's ``Images/``: ``unzip -L`` lowercases every name, and a renaming tool may); ``path`` itself where none
    is. A folder's files were all reported missing (the download "incomplete"), and its unlisted images not
    counted."""
    if path.is_dir() or not path.parent.is_dir():
        return path
    found = _entries_in_any_case(path.parent, path.name, Path.is_dir)
    return found[0] if len(found) == 1 else path


def _entries_in_any_case(folder: Path, name: str, kind: Callable[[Path], bool]) -> list[Path]:
    """The entries of ``folder`` of ``kind`` (``Path.is_file``, ``Path.is_dir``) named ``name`` in any case or
    Unicode form."""
    wanted = unicodedata.normalize("NFC", name).casefold()
    stamp = folder.stat().st_mtime_ns  # changed by an entry added, removed or renamed since the listing
    known = _FOLDER_INDEX.get(str(folder))
    # a listing made within a clock tick of the folder's last change (2 s: FAT's tick; ext4's is milliseconds) may
    # miss a change made in the same tick, which leaves the stamp as it was: such a listing is not kept
    if known is None or known[0] != stamp or known[1] - stamp < _TRUSTED_AFTER_NS:
        if len(_FOLDER_INDEX) >= 16:
            _FOLDER_INDEX.clear()
        known = _FOLDER_INDEX[str(folder)] = stamp, time.time_ns(), _folder_index(folder)
    # checked all the same: an entry replaced by one of another kind keeps the folder's stamp
    return [p for p in known[2].get(wanted, ()) if kind(p)]


#: How long after a folder's last change a listing of it is kept (:func:`_entries_in_any_case`), in ns.
_TRUSTED_AFTER_NS = 2_000_000_000


#: Folders listed by :func:`_entries_in_any_case`, by path, with their modification time then: a sheet of N names in
#: another case than the disk's listed the folder once per row, N^2 in all (25 s for 4000 rows). A folder changed
#: since (a new twin that makes a name ambiguous, a file renamed) is listed again.
_FOLDER_INDEX: dict[str, tuple[int, int, dict[str, tuple[Path, ...]]]] = {}


def _folder_index(folder: Path) -> dict[str, tuple[Path, ...]]:
    """``folder``'s entries by their NFC case-folded name."""
    index: dict[str, list[Path]] = {}
    for entry in folder.iterdir():
        index.setdefault(unicodedata.normalize("NFC", entry.name).casefold(), []).append(entry)
    return {key: tuple(entries) for key, entries in index.items()}


def count_by_suffix(paths: Sequence[Path]) -> dict[str, int]:
    """``{".avi": 2, ".txt": 1, "": 1}``: lower-case suffixes (``""`` for none), most frequent first."""
    counts = Counter(p.suffix.lower() for p in paths)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def suffix_counts(paths: Sequence[Path]) -> str:
    """``".avi 2, .txt 1, (no suffix) 1"``: :func:`count_by_suffix` for a message."""
    return counts_text(count_by_suffix(paths))


def counts_text(counts: dict[str, int]) -> str:
    """``{".avi": 2, "": 1}`` (as :func:`count_by_suffix` gives, or a report holds) -> ``".avi 2, (no suffix) 1"``."""
    return ", ".join(f"{suffix or '(no suffix)'} {n}" for suffix, n in counts.items())


def outside_folders(paths: Sequence[Path], folders: Sequence[str | os.PathLike | None]) -> list[Path]:
    """``paths`` less those inside any of ``folders`` (None entries ignored; ``~``, relative, absolute and linked
    spellings compared as real paths: ``/data`` is often a link, and a folder reached through it is the same folder):
    a run's own outputs kept under its input folder are never read back as inputs."""
    outside = [Path(os.path.realpath(os.path.expanduser(f))) for f in folders if f is not None]
    if not outside:
        return list(paths)
    real_folders: dict[str, Path] = {}  # one real path per folder, not per file: an archive holds 370K files

    def real(path: Path) -> Path:
        parent = os.path.dirname(os.path.abspath(path))
        if parent not in real_folders:
            real_folders[parent] = Path(os.path.realpath(parent))
        return real_folders[parent] / os.path.basename(path)

    return [p for p in paths if not any(real(p).is_relative_to(o) for o in outside)]


def split_by_source(items: Sequence[Any], sources: Sequence[str], val_fraction: float,
                    seed: int) -> tuple[list[Any], list[Any]]:
    """(train, validation): whole groups of items held out by a hash of (seed, group) below ``val_fraction``.

    ``sources`` names each item's group (:func:`source_group`: a picture, or a stretch of a cine loop, multi-frame
    DICOM or volume of a corpus cache), whose nearly alike frames never fall on both sides. The hash of the group
    alone, not a permutation of the items, decides, so a group keeps its side when the data grows (an archive
    extended with ``prepare-corpus``; a permutation drawn for N items reshuffles at N + 1, and evaluate and resume
    would then score frames that training saw). Written by hand because scikit-learn's group splitters also draw
    from the number of groups. The validation share is about ``val_fraction``. Where no group's draw falls below
    it (a few groups), the lowest-drawn group validates anyway: a group added later either draws lower (and, new,
    takes its place) or does not, so nothing trained on ever moves into validation. Where every group's draw falls
    below it (a large share, few groups), the highest-drawn trains; that one can move into validation when groups
    are added. A held-out share far from ``val_fraction`` is warned about.

    Raises:
        ValueError: ``val_fraction`` outside [0, 1), or ``sources`` not one per item.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if len(sources) != len(items):
        raise ValueError(f"{len(sources)} sources for {len(items)} items")
    draws = {key: _unit_hash(seed, key) for key in set(sources)}
    held = {key for key, draw in draws.items() if draw < val_fraction}
    if val_fraction > 0 and len(draws) > 1:
        ranked = sorted(draws, key=draws.get)
        if not held:  # at least one group validates
            held = {ranked[0]}
        if held == set(draws):  # and at least one trains
            held -= {ranked[-1]}
    train = [x for x, key in zip(items, sources) if key not in held]
    val = [x for x, key in zip(items, sources) if key in held]
    share = len(val) / max(len(items), 1)
    if val_fraction > 0 and (share > max(2 * val_fraction, val_fraction + 0.2) or share < val_fraction / 2):
        logger.warning("%d of %d images (%.0f%%) are held out for validation, not about %.0f%%: the data has few "
                       "source files (a long loop is held out whole, in stretches of %d frames)", len(val),
                       len(items), 100 * share, 100 * val_fraction, FRAMES_PER_GROUP)
    return train, val


#: Consecutive frames of one source that a pretraining split keeps together (:func:`source_group`).
FRAMES_PER_GROUP = 64


def source_group(source: str, frame: int = 0) -> str:
    """The split group of frame ``frame`` of ``source``: stretches of :data:`FRAMES_PER_GROUP` frames, so a loop's
    neighbouring frames stay on one side (only stretch ends meet) while a single long recording can still be split,
    by the same rule whatever else the data holds."""
    return f"{source}#{int(frame) // FRAMES_PER_GROUP}"


def _unit_hash(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (seed, key): BLAKE2b of both, as the first 8 bytes over 2**64."""
    digest = hashlib.blake2b(f"{seed}\0{key}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def synthetic_default(cache_dir: str | os.PathLike, num_images: int, seed: int = 0) -> Path:
    """The embedded default dataset: ``num_images`` simulated screen captures, generated once into ``cache_dir``."""
    folder = Path(cache_dir) / f"synthetic_{num_images}_seed{seed}"
    record = generate_dataset(folder, num_images, seed=seed, config=SimulatorConfig(screen_capture=True))
    logger.info("synthetic default data: %d images in %s (%.0f images/s when generated)",
                len(record["files"]), folder, record["images_per_second"])
    return folder


def pretrain_datalists(
    dataset_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    num_synthetic: int = 2000,
    val_fraction: float = 0.1,
    seed: int = 42,
    exclude: Sequence[str | os.PathLike | None] = (),
    held_out: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Train and validation datalists (``[{"image": path}, ...]``) for MAE pretraining.

    Args:
        dataset_dir: a folder of pictures (searched recursively), a corpus cache written by ``prepare-corpus``
            (items are then ``{"image": index of a kept frame}``, read by ``LoadCorpusFramed``), or None for the
            synthetic default. The other files of a folder (DICOM, cine loops, volumes, notes) are counted in a
            warning that points to ``prepare-corpus``, which reads them. Of a folder's pictures, those that cannot be
            pictures (empty, a header no reader knows) are left out before the split, with a warning, and
            byte-identical copies share one side of it.
        cache_dir: where the synthetic default is generated.
        num_synthetic: images of the synthetic default.
        val_fraction: share held out for validation reconstruction loss (which chooses the best model), in (0, 1).
        seed: split seed.
        exclude: folders whose files are left out (the run's outputs: its reconstruction grids are PNGs, and read
            back they would join the data and reshuffle the split on the next run or resume).
        held_out: split as training does; False: every image in ``validation``, in file order, none in ``train``
            (the pretraining ``evaluate --eval_split all`` of an archive held out of pretraining: one image, or
            copies of one, are a set to score, where a split needs two it can part).

    Raises:
        ValueError: ``val_fraction`` out of range, no image, or (``held_out``) too few images (readable, and not all
            copies of one) to hold one out for validation.
    """
    from monai_ext.data.corpus import CorpusFrames, is_corpus_cache, kept_sources

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1): the validation loss chooses the best model, got "
                         f"{val_fraction!r}")
    dataset_dir = path_setting(dataset_dir, "dataset_dir")
    folder = synthetic_default(setting_text(cache_dir, "cache_dir"), num_synthetic) if dataset_dir is None else dataset_dir
    if is_corpus_cache(folder):
        files = [{"image": i} for i in range(len(CorpusFrames(folder)))]
        sources = [source_group(source, frame) for source, frame in kept_sources(folder)]
        screened_out = 0  # the corpus left out what it could not read when it was prepared
    else:
        pictures, screened_out = _readable_pictures(Path(folder), _pictures(Path(folder), exclude))
        files = [{"image": str(p)} for p in pictures]
        sources = _copies_in_one_group(pictures, [source_group(os.path.relpath(p, folder)) for p in pictures], folder)
    unread = f" ({screened_out} more cannot be pictures and were left out, named in the warning above)" \
        if screened_out else ""
    if not held_out:
        if not files:
            raise ValueError(f"{str(folder)!r} holds no image to evaluate{unread}")
        logger.info("pretraining data from %s: %d images, none held out", folder, len(files))
        return {"train": [], "validation": sorted(files, key=lambda item: item["image"])}
    if len(files) < 2:
        raise ValueError(f"{str(folder)!r} holds {len(files)} training image(s){unread}: pretraining holds part of "
                         "them out for its validation loss and needs at least 2")
    train, val = split_by_source(files, sources, val_fraction, seed)
    if (not train or not val) and not is_corpus_cache(folder) and len(set(sources)) == 1:
        raise ValueError(f"all {len(files)} images under {str(folder)!r} are byte-identical copies of one picture: "
                         "a copy cannot be both trained on and held out for the validation loss; add other pictures")
    if not train or not val:
        raise ValueError(f"all {len(files)} images under {str(folder)!r} come from one stretch of one source file "
                         f"({sources[0].rsplit('#', 1)[0]!r}): its nearly alike frames cannot be both trained on and "
                         "held out for the validation loss; add other files")
    logger.info("pretraining data from %s: %d train, %d validation images", folder, len(train), len(val))
    return {"train": train, "validation": val}


def _pictures(folder: Path, exclude: Sequence[str | os.PathLike | None]) -> list[Path]:
    """The pictures under ``folder`` outside ``exclude``; the files passed over are counted in a warning, hidden
    ones named as pictures among them (a folder copied off a Mac holds a ``._`` copy of each: the user counts more
    pictures than were trained on)."""
    hidden: list[Path] = []
    images, others = list_images_and_others(folder, hidden=hidden)
    kept_images, others = outside_folders(images, exclude), outside_folders(others, exclude)
    hidden = outside_folders(hidden, exclude)
    if len(kept_images) < len(images):
        logger.warning("%d picture(s) under %s lie in this run's output folders and are not trained on",
                       len(images) - len(kept_images), folder)
    hid = hidden_files_text(hidden) if hidden else ""
    if others:
        logger.warning("%d file(s) under %s are not pictures and are not trained on (%s); DICOM files, cine loops "
                       "and volumes are read by `python -m monai_ext prepare-corpus`, whose cache --dataset_dir "
                       "takes%s", len(others), folder, suffix_counts(others), f"; {hid}" if hid else "")
    elif hid:
        logger.warning("%s: %s", folder, hid)
    return kept_images


def _readable_pictures(folder: Path, pictures: Sequence[Path]) -> tuple[list[Path], int]:
    """(the ``pictures`` that may be read, how many were left out), the others named in one warning.

    An empty file or one whose header no reader knows (a download cut off, a text file named ``.png``) took part in
    the split like a picture and was only skipped when loaded: it could make up the whole validation part, which
    then stopped the run. The check is the header's (:func:`~monai_ext.data.screening.why_not_an_image`, no pixel
    decoded), so a file damaged further in (a truncated PNG) is still skipped when loaded, naming the reason. A DICOM
    file under a picture's name passes: the bundle's loader reads it as DICOM.
    """
    from monai_ext.data.screening import why_not_an_image
    from monai_ext.io.dicom import has_dicom_preamble

    reasons = {p: why_not_an_image(p) for p in pictures}
    bad = {p: reason for p, reason in reasons.items() if reason and not has_dicom_preamble(p)}
    if bad:
        counts = Counter(reason for reason in bad.values())
        shown = "; ".join(f"{p.relative_to(folder) if p.is_relative_to(folder) else p}: {reason}"
                          for p, reason in list(bad.items())[:3])
        logger.warning("%d of %d picture file(s) under %s cannot be pictures and are left out before the split (%s), "
                       "e.g. %s%s", len(bad), len(pictures), folder,
                       ", ".join(f"{reason} {n}" for reason, n in counts.most_common()), shown,
                       "; ..." if len(bad) > 3 else "")
    return [p for p in pictures if p not in bad], len(bad)


def _copies_in_one_group(pictures: Sequence[Path], sources: list[str], folder: str | os.PathLike) -> list[str]:
    """``sources`` with the byte-identical copies of a picture put in one group: that of the shortest name.

    Copies of one picture under other names (``scan.png`` and ``scan copy.png``, two exports of one study) drawn
    to both sides trained on a validation image, and the validation loss, which chooses the best model, came out
    too good. Only copies move: the group standing for a set keeps its draw, and so its side, and every other
    group keeps its draw, so a folder without copies splits as before. Only files of a size another file has are hashed
    (:func:`~monai_ext.data.identical.identical_sets`): an archive of thousands is read in full only where sizes
    meet.
    """
    from monai_ext.data.identical import identical_sets

    by_size: dict[int, list[int]] = {}
    for i, path in enumerate(pictures):
        by_size.setdefault(path.stat().st_size, []).append(i)
    candidates = [i for found in by_size.values() if len(found) > 1 for i in found]
    sets = [[candidates[j] for j in found] for found in identical_sets([pictures[i] for i in candidates])]
    if not sets:
        return sources
    grouped = list(sources)
    for found in sets:
        # the shortest name stands for the set ("scan.png", not "scan copy.png" or "scan (1).png", which sorts
        # first): the picture a copy was made of keeps the side it had before the copy was added
        kept = min(found, key=lambda i: (len(sources[i]), sources[i]))
        for i in found:
            grouped[i] = sources[kept]
    example = sets[0]
    kept = min(example, key=lambda i: (len(sources[i]), sources[i]))
    logger.warning("%d picture(s) under %s are byte-identical copies of others and are kept on their side of the "
                   "split, so that no copy is validated on after its twin was trained on: e.g. %s with %s",
                   sum(len(found) - 1 for found in sets), folder, pictures[next(i for i in example if i != kept)].name,
                   pictures[kept].name)
    return grouped
