"""Byte-identical images in a labelled dataset.

Public sets hold copies (BUSI has several), and an archive gathered from two exports holds more. A copy under
another class trains one picture with two answers; a copy of the same class, drawn into training while its twin is
drawn into test, is tested on a picture trained on. Paths cannot show either: the copies have other names. File
contents are compared (SHA-256), so only exact copies are found, not re-encoded or resized ones.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)
Item = dict[str, Any]


def file_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def identical_sets(paths: Sequence[str | os.PathLike]) -> list[list[int]]:
    """Indices into ``paths`` of the files holding the same bytes: one list per content that two or more hold, each in
    the order of ``paths``; the lists ordered by their first index."""
    by_digest: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        by_digest.setdefault(file_digest(path), []).append(i)
    return sorted((found for found in by_digest.values() if len(found) > 1), key=lambda found: found[0])


def keep_one_copy(items: list[Item], class_names: Sequence[str], source: str) -> list[Item]:
    """``items`` with each image whose bytes an earlier item already holds left out, with one warning naming them.

    Only the first of identical images is kept, so that no copy can be trained on while another is tested, nor be
    counted twice in the test figures.

    Args:
        items: ``{"image": path, "label": class index, ...}``, in the order the dataset lists them.
        class_names: names of the class indices, for the message.
        source: the dataset (folder or CSV), named in messages.

    Raises:
        ValueError: identical images with different labels, naming two of them and their classes: which class is
            right is the user's call, and either choice made here would be a wrong label for one of them.
    """
    sets = identical_sets([it["image"] for it in items])
    for found in sets:
        labels = {items[i]["label"] for i in found}
        if len(labels) > 1:
            first = items[found[0]]
            other = next(items[i] for i in found if items[i]["label"] != first["label"])
            raise ValueError(f"{source}: {first['image']!r} ({class_names[first['label']]}) and {other['image']!r} "
                             f"({class_names[other['label']]}) hold the same bytes; an image has one class: "
                             "remove the copy from the wrong class")
    dropped = {i for found in sets for i in found[1:]}
    if dropped:
        shown = ", ".join(f"{items[i]['image']!r} (a copy of {items[found[0]]['image']!r})"
                          for found in sets[:2] for i in found[1:2])
        logger.warning("%s: %d image(s) are byte-identical copies of others of their class and are left out, so "
                       "that no copy is tested after its twin was trained on: %s", source, len(dropped), shown)
    return [it for i, it in enumerate(items) if i not in dropped]


def warn_of_copies_across_parts(splits: Sequence[dict[str, list[Item]]], source: str,
                                digest: Callable[[str], str] | None = None) -> None:
    """Warn, with a count and an example, where a split's test part holds an image byte-identical to one of its
    training or validation part: an official protocol's lists are kept as published, but its test figures then
    include pictures the model was trained on.

    Args:
        splits: the protocol's ``{"train", "validation", "test"}`` splits.
        source: the dataset and its lists, named in the warning.
        digest: the content of a path (defaults to :func:`file_digest`, cached over the splits).
    """
    digest = digest or functools.lru_cache(maxsize=None)(file_digest)  # an image is in every split of k-fold
    for k, split in enumerate(splits):
        seen = {digest(it["image"]): it["image"] for part in ("train", "validation") for it in split.get(part, [])}
        copies = [(it["image"], seen[d]) for it in split.get("test", []) if (d := digest(it["image"])) in seen
                  and os.path.realpath(seen[d]) != os.path.realpath(it["image"])]
        if copies:
            logger.warning("%s, split %d: %d test image(s) are byte-identical to training or validation images, e.g. "
                           "%r = %r; the test figures include images trained on", source, k, len(copies),
                           copies[0][0], copies[0][1])
