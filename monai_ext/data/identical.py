"""Byte-identical images in a labelled dataset.

Public sets hold copies (BUSI has several), and an archive gathered from two exports holds more. A copy under
another class trains one picture with two answers; a copy of the same class, drawn into training while its twin is
drawn into test, is tested on a picture trained on. Paths cannot show either: the copies have other names. File
contents are compared (SHA-256), so only exact copies are found, not re-encoded or resized ones.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from monai_ext.io.checkpoints import sha256_of

logger = logging.getLogger(__name__)
Item = dict[str, Any]


def identical_sets(paths: Sequence[str | os.PathLike]) -> list[list[int]]:
    """Indices into ``paths`` of the files holding the same bytes: one list per content that two or more hold, each in
    the order of ``paths``; the lists ordered by their first index."""
    by_digest: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        by_digest.setdefault(sha256_of(path), []).append(i)
    return sorted((found for found in by_digest.values() if len(found) > 1), key=lambda found: found[0])


def keep_one_copy(items: list[Item], class_names: Sequence[str], source: str) -> list[Item]:
    """``items`` with byte-identical copies left out, each kind named in one warning.

    Of identical images of one class the first is kept, so that no copy can be trained on while another is tested,
    nor be counted twice in the test figures. Identical images under different classes are all left out: which
    class is right is the user's call, and keeping either would train or test a wrong label (public sets hold such
    pairs; refusing them would stop the whole set on files the user can only remove).

    Args:
        items: ``{"image": path, "label": class index, ...}``, in the order the dataset lists them.
        class_names: names of the class indices, for the message.
        source: the dataset (folder or CSV), named in messages.

    Raises:
        ValueError: one file listed twice (a repeated row, not a copy), naming it.
    """
    _refuse_a_file_listed_twice(items, source)
    sets = identical_sets([it["image"] for it in items])
    conflicting = [found for found in sets if len({items[i]["label"] for i in found}) > 1]
    copies = [found for found in sets if found not in conflicting]
    if conflicting:
        shown = ", ".join(f"{items[i]['image']!r} ({class_names[items[i]['label']]})" for i in conflicting[0])
        logger.warning("%s: %d set(s) of byte-identical images have different classes and are left out, every copy, "
                       "since which class is right is yours to say: %s", source, len(conflicting), shown)
    if copies:
        shown = ", ".join(f"{items[found[1]]['image']!r} (a copy of {items[found[0]]['image']!r})"
                          for found in copies[:2])
        logger.warning("%s: %d image(s) are byte-identical copies of others of their class and are left out, so "
                       "that no copy is tested after its twin was trained on: %s", source,
                       sum(len(found) - 1 for found in copies), shown)
    dropped = {i for found in conflicting for i in found} | {i for found in copies for i in found[1:]}
    return [it for i, it in enumerate(items) if i not in dropped]


def _refuse_a_file_listed_twice(items: list[Item], source: str) -> None:
    """A file listed twice (a CSV row repeated) is a mistake in the list, not a copy: refused, naming the file.

    Paths are compared as written (made absolute, ``.`` and ``..`` resolved), not through symbolic links: a link to
    another file of the set (an export's ``latest.png``, a folder linked in twice) is a copy under another name,
    which :func:`keep_one_copy` leaves out as such; refused, it stopped a folder set whose list no one wrote.
    """
    counts = Counter(os.path.abspath(it["image"]) for it in items)
    repeated = sorted(path for path, n in counts.items() if n > 1)
    if repeated:
        raise ValueError(f"{source} lists {len(repeated)} file(s) more than once, e.g. {repeated[0]!r}; list each "
                         "image once")


def warn_of_copies_across_parts(splits: Sequence[dict[str, list[Item]]], source: str,
                                digest: Callable[[str], str] | None = None) -> None:
    """Warn, with a count and an example, where a split's test part holds an image byte-identical to one of its
    training or validation part: an official protocol's lists are kept as published, but its test figures then
    include pictures the model was trained on.

    Args:
        splits: the protocol's ``{"train", "validation", "test"}`` splits.
        source: the dataset and its lists, named in the warning.
        digest: the content of a path (defaults to the file's SHA-256, cached over the splits).
    """
    digest = digest or functools.lru_cache(maxsize=None)(sha256_of)  # an image is in every split of k-fold
    for k, split in enumerate(splits):
        seen = {digest(it["image"]): it["image"] for part in ("train", "validation") for it in split.get(part, [])}
        copies = [(it["image"], seen[d]) for it in split.get("test", []) if (d := digest(it["image"])) in seen
                  and os.path.realpath(seen[d]) != os.path.realpath(it["image"])]
        if copies:
            logger.warning("%s, split %d: %d test image(s) are byte-identical to training or validation images, e.g. "
                           "%r = %r; the test figures include images trained on", source, k, len(copies),
                           copies[0][0], copies[0][1])
