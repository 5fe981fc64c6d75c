"""Studies read from the folders a labelled set's images sit in.

Frames of one patient tested after their neighbours were trained on inflate every figure, so the classification
protocols (``folder``) and the segmentation ones (``busi``, ``image-mask-folders``) give the images of one study
folder one ``patient``: they then share a test fold and a side of the validation split. One rule serves both, so that
one tree is grouped alike whichever task reads it; and both carve a fold's validation part out of whole studies
by one rule (:func:`whole_groups_near`). Written here because no library reads studies from folder trees, and
scikit-learn's grouped splitters give parts of a number of groups, not a share of the images (below).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)


def _studies_at(folders: Sequence[Sequence[str]], level: int) -> list[str | None]:
    """Each image's folder path down to ``level`` (``"benign/p3"`` for ``["benign", "p3", "cine"]`` at level 1), or
    None for an image with no folder at that level."""
    return ["/".join(path[:level + 1]) if len(path) > level else None for path in folders]


def _below_containers(folders: Sequence[Sequence[str]], level: int, folds: int, parts: Sequence[str],
                      source: str) -> tuple[int, list[str | None]]:
    """The level whose folders are the studies, ``level`` or the one below it, and each image's study there.

    The folders at ``level`` are containers (sites, scanners, exports) holding the studies where every part has
    fewer of them than ``folds`` (grouped by them, the folds could not be filled), some hold sub-folders, and none of
    those holds images of its own (``images/siteA/patient3/frame.png``). Otherwise they are the studies: a folder as
    coarse as a site never lets a patient cross parts, while going down from patients that keep their frames in
    sub-folders (``patient3/left/``, ``patient3/cine/`` beside loose frames) split one patient over train and test.
    Only one level down, and only below the folders that hold sub-folders: a folder beside them holding its images
    directly (``images/patient7/frame.png`` beside ``images/siteA/``) stays a study.
    """
    studies = _studies_at(folders, level)
    holding = {s for s, path in zip(studies, folders) if s is not None and len(path) > level + 1}
    loose_in_holding = any(s in holding and len(path) == level + 1 for s, path in zip(studies, folders))
    most = max(Counter(part for part, _ in {(part, s) for part, s in zip(parts, studies) if s is not None}).values(),
               default=0)
    if holding and most < folds and not loose_in_holding:
        logger.info("%s: the %d folder(s) at level %d (e.g. %r) hold sub-folders of their own and cannot fill %d "
                    "folds: read as containers (sites, exports), and the folders below them as studies", source,
                    len(holding), level + 1, min(holding), folds)
        # a folder at ``level`` without sub-folders is a study, not a container: its images, outside any folder
        # one level down, were each a study of one, and one patient's frames were split over train and test
        below = _studies_at(folders, level + 1)
        return level + 1, [under if s in holding else s for s, under in zip(studies, below)]
    return level, studies


def _container_part(studies: list[str | None], parts: Sequence[str],
                    folds: int) -> tuple[str, int, int, str, int] | None:
    """The first part (of ``parts``, one per image) whose study folders look like containers, as (part, its images,
    its folders, its largest folder, that folder's images), or None.

    A part's folders are containers where they are fewer than ``folds`` and one holds more than a fold's share of
    the part's images (``1 / folds``): grouping by them could not spread the part over the test folds. Loose images
    (studies of their own) count in the part's images, not as folders: a few small study folders beside many loose
    images are grouped. A part of at least ``folds`` folders is of studies whatever their sizes: a long study does
    not turn grouping off (StratifiedGroupKFold takes unequal groups; the folds are then uneven, no study split).
    """
    images = Counter(parts)
    sizes = Counter((part, s) for part, s in zip(parts, studies) if s is not None)
    folders_in = Counter(part for part, _ in sizes)
    for (part, folder), n in sorted(sizes.items(), key=lambda pair: -pair[1] / images[pair[0][0]]):
        if folders_in[part] < folds and n * folds > images[part]:
            return part, images[part], folders_in[part], folder, n
    return None


def _warn_of_containers(container: tuple[str, int, int, str, int], in_studies: int, images: int, folders: int,
                        folds: int, source: str, remedy: str) -> None:
    """Say that the sub-folders are read as containers (:func:`_container_part` found ``container``) and how to keep
    studies together."""
    part, part_images, count, folder, n = container
    where = f", but class {part!r} has {count}" if part else ""
    fewer = f"ask for at most {count} folds (--folds {count}) or " if count >= 3 else ""
    logger.warning("%s: %d of %d image(s) sit in %d sub-folder(s)%s, fewer than the %d folds, and %r holds %d of its "
                   "%d images, more than a fold's share: the sub-folders are read as containers (sites, scanners, "
                   "exports), not studies, and the images are split one by one (frames of one study may then sit in "
                   "several parts); to keep studies together, %s%s", source, in_studies, images, folders, where,
                   folds, folder, n, part_images, fewer, remedy)


def study_folders(folders: Sequence[Sequence[str]], level: int, folds: int, source: str, remedy: str,
                  parts: Sequence[str] | None = None) -> list[str | None] | None:
    """Each image's study folder, or None where the images are to be split one by one.

    Args:
        folders: each image's folders below the dataset's root, outermost first (``["benign", "p3"]``), one per
            image.
        level: the index, in ``folders``, of the level holding the studies: the folders above it are the class
            folder or folders every image sits in (an archive unpacked into a folder of its own name).
        folds: test folds to be drawn.
        source: the dataset, named in the log.
        remedy: how a user keeps studies together where the folders are read as containers, ending the warning.
        parts: each image's part within which the folders must be able to fill the folds (default: the whole set);
            classification gives the class, since every test fold needs every class, while segmentation's strata
            only balance the folds.

    Returns:
        Per image, the path of its study folder (``"benign/p3"``), or None for an image outside any study folder
        (a study of its own, for the caller to name); or None (no list) where no image sits in a sub-folder, or
        the sub-folders are containers, not studies (:func:`_container_part`, with a warning).
    """
    if parts is not None and len(parts) != len(folders):
        raise ValueError(f"parts must give one part per image ({len(folders)}), got {len(parts)}")
    parts = list(parts) if parts is not None else [""] * len(folders)
    level, studies = _below_containers(folders, level, folds, parts, source)
    found = {s for s in studies if s is not None}
    if not found:
        return None
    in_studies = sum(s is not None for s in studies)
    container = _container_part(studies, parts, folds)
    if container is not None:
        _warn_of_containers(container, in_studies, len(studies), len(found), folds, source, remedy)
        return None
    loose = len(studies) - in_studies
    logger.info("%s: %d of %d image(s) sit in sub-folders; folds are grouped by study folder (%d studies: %d folders "
                "at level %d, e.g. %r, and %d image(s) outside any, each a study of its own): the images of one "
                "sub-folder share a test fold and a side of the validation split", source, in_studies, len(studies),
                len(found) + loose, len(found), level + 1, min(found), loose)
    return studies


def whole_groups_near(groups: Sequence[str], strata: Sequence[str], val_fraction: float, seed: int,
                      every_stratum: bool = False) -> set[int]:
    """Indices of a validation part of whole groups: of each stratum, the groups, taken in an order shuffled by
    ``seed``, that bring its count nearest ``val_fraction`` of the stratum's images.

    A k-fold part of unequal groups is no share of the images: a study of 60 frames among nine of 6 made the whole
    validation part of every fold that did not test it, and was never trained on. A group is taken where it brings
    its stratum's count nearer the target; a group's stratum is that of its first image (a class folder holds its
    studies; a patient's images are of one class). A stratum of one group stays in training: one never trained on
    would score nothing.

    Args:
        groups: (N,) each image's group (patient, study).
        strata: (N,) each image's stratum (class).
        val_fraction: the validation share of each stratum, in (0, 0.5).
        seed: the order in which groups are tried.
        every_stratum: where no group of a stratum of two or more brings its count nearer (every one larger than
            twice its target), take its smallest anyway, so that validation holds every class that can be on both
            sides (classification: the best checkpoint chosen on some classes only). Otherwise such a stratum gives
            none, and only where no stratum gives any is the smallest group of all taken, so that a validation part
            is there.
    """
    if len(groups) != len(strata):
        raise ValueError(f"groups and strata must be of one length, got {len(groups)} and {len(strata)}")
    sizes: dict[str, int] = {}
    stratum_of: dict[str, str] = {}
    for g, s in zip(groups, strata):
        sizes[g] = sizes.get(g, 0) + 1
        stratum_of.setdefault(g, s)
    order = sorted(sizes)
    np.random.default_rng(seed).shuffle(order)
    taken: list[str] = []
    for stratum in sorted(set(stratum_of.values())):
        mine = [g for g in order if stratum_of[g] == stratum]
        target = val_fraction * sum(sizes[g] for g in mine)
        chosen, count = [], 0
        for g in mine:
            if abs(count + sizes[g] - target) < abs(count - target):
                chosen.append(g)
                count += sizes[g]
        if not chosen and every_stratum and len(mine) > 1:
            chosen = [min(mine, key=lambda g: sizes[g])]
        taken += chosen
    if not taken:  # the smallest, the first of them in the shuffled order
        taken = [min(order, key=lambda g: sizes[g])]
    return {i for i, g in enumerate(groups) if g in set(taken)}
