"""The train/validation split of a datastore's labelled images, stable across training rounds.

Each training round fine-tunes the served model on the datastore's labels. A split drawn anew at each round moved
images the served model had trained on into the new validation part: the fine-tune was chosen on images it
remembered, and the publication check (:meth:`~monai_ext.apps.label.train.UltrasoundClassifyTrain.not_worth_publishing`)
found too few validation images new to the served model to compare the two. Here an image keeps its part:

* an image's rank is the SHA-256 of the seed and its datastore image id (its file name less the suffix, not its path:
  the same under any listing order and wherever the studies folder lies); each class (stratum) takes its quota of
  validation images, about ``val_fraction`` of it by largest remainders, at least one of a class of two or more and
  never all of it, in that order;
* images the served model trained on (or an earlier model of its line did) stay in training, and images that were
  only validated on stay in validation, whatever the seed, ``val_fraction`` or their class now: only images new to
  the line are ranked, to fill what their class's quota still lacks.

Why a record and not the hash alone: a rule that decides each image from its own hash alone is the only rule that
never moves an image as others are added, and it cannot keep a class of two images represented in validation (both
may hash into training). Any rule that gives such a class a validation image by looking at the others moves images
as labels come and go (a new image ranked first takes the place; the validation image relabelled or deleted hands
it to a training image). So the record (:class:`SplitMemory`, kept in the published model's lineage record) says
which images the line trained on and which it only validated on.

No MONAI Label import: the main environment tests it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import math
import os
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monai_ext.apps.label.datastore import IMAGE_PATTERNS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitMemory:
    """Which images a served model's line trained on and which it only validated on, by datastore image id.

    Cumulative over the line's trainings: a model fine-tuned from another has seen what that one trained on.

    Attributes:
        trained: ids of images some model of the line trained on: they never go to validation.
        validation: ids of images models of the line validated on (chose their best epoch by) and never trained on.
        recorded: whether this memory comes from a record (or follows one): an empty memory of a model published
            before the record held it cannot tell which of its images it trained on.
    """

    trained: frozenset[str] = frozenset()
    validation: frozenset[str] = frozenset()
    recorded: bool = False

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None, studies: str | None = None) -> SplitMemory:
        """The memory in a lineage record's ``split`` entry; empty without one (an earlier publication), or where
        ``studies`` is given and the record's are others (the app started with its own published file as checkpoint
        on another studies folder: the record's ids are another datastore's, whose ``image_0001`` is another image).
        """
        split = (record or {}).get("split")
        if not isinstance(split, Mapping) or (studies is not None and (record or {}).get("studies") != studies):
            return cls()
        trained = frozenset(str(i) for i in split.get("trained") or [])
        return cls(trained, frozenset(str(i) for i in split.get("validation") or []) - trained, recorded=True)

    def after(self, split: Mapping[str, Sequence[Mapping[str, Any]]],
              seen: Collection[str] = ()) -> SplitMemory:
        """The memory of a model trained on ``split`` (a datalist's ``train`` and ``validation`` items) from the
        model this memory is of; ``seen``: ids of images the model it started from trained on otherwise than this
        memory says (a model published before the record: its checkpoint's ``trained_images``), recorded as trained,
        never as validated only (they would count as new to the line for good)."""
        trained = self.trained | {image_identity(item) for item in split.get("train") or []} | set(seen)
        validated = self.validation | {image_identity(item) for item in split.get("validation") or []}
        return SplitMemory(frozenset(trained), frozenset(validated - trained), recorded=True)

    def as_record(self) -> dict[str, list[str]]:
        """The ``split`` entry of a lineage record (sorted, so that the record reads the same each time)."""
        return {"trained": sorted(self.trained), "validation": sorted(self.validation)}


def trained_before(split: Mapping[str, Sequence[Mapping[str, Any]]], trained_paths: Collection[str]) -> set[str]:
    """Ids of ``split``'s validation images that a checkpoint's ``trained_images`` (real paths) list: what a served
    model without a split record trained on (or was selected on: its record does not tell which), to be recorded as
    trained by :meth:`SplitMemory.after`."""
    return {image_identity(item) for item in split.get("validation") or []
            if os.path.realpath(str(item["image"])) in trained_paths}


def image_identity(item: Mapping[str, Any]) -> str:
    """An item's datastore image id: its ``id``, else its image file's name less the suffix, as MONAI Label's local
    datastore names it (``case.1.png`` -> ``case.1``)."""
    if item.get("id"):
        return str(item["id"])
    name = Path(str(item["image"])).name
    suffix = next((p[1:] for p in reversed(IMAGE_PATTERNS) if fnmatch.fnmatchcase(name, p)), Path(name).suffix)
    return name[:-len(suffix)] if suffix and name.endswith(suffix) and len(name) > len(suffix) else name


def rank_key(identity: str, seed: int) -> str:
    """The order in which new images of a class fill its validation quota: the SHA-256 of the seed and the id."""
    return hashlib.sha256(f"{seed}\0{identity}".encode()).hexdigest()


def validation_quotas(counts: Mapping[Hashable, int], val_fraction: float) -> dict[Hashable, int]:
    """Validation images per stratum: ``val_fraction`` of the whole, rounded half up, shared by largest remainders
    (ties to the first stratum in sorted order); at least one of a stratum of two or more, never all of it, none of a
    stratum of one."""
    eligible = {s: n for s, n in counts.items() if n >= 2}
    exact = {s: val_fraction * n for s, n in eligible.items()}
    quota = {s: math.floor(e) for s, e in exact.items()}
    extra = math.floor(val_fraction * sum(eligible.values()) + 0.5) - sum(quota.values())
    for s in sorted(eligible, key=lambda s: (-(exact[s] - quota[s]), str(s)))[:max(0, extra)]:
        quota[s] += 1
    return {s: min(n - 1, max(1, quota[s])) if n >= 2 else 0 for s, n in counts.items()}


def stable_split(items: Sequence[Mapping[str, Any]], strata: Sequence[Hashable], val_fraction: float, seed: int,
                 memory: SplitMemory | None = None, what: str = "labelled images",
                 ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(train, validation) parts of ``items``, stratified by ``strata`` (one per item), stable across rounds.

    Args:
        items: ``{"image", "id"?, ...}``; identified by :func:`image_identity`.
        strata: each item's class (or one value for all), as messages name it (``"class 'benign'"``).
        val_fraction: in (0, 0.5).
        seed: ranks the images new to the line (:func:`rank_key`).
        memory: the served model's line (:class:`SplitMemory`); None or empty for a model that trained on none of
            the datastore's images.
        what: the items, for messages.

    Returns:
        Both parts in the order of ``items``.

    Raises:
        ValueError: ``val_fraction`` out of range, or a stratum of two or more images that the line all trained on
            (its validation images relabelled or deleted), naming it: no image is left to validate it on without
            memory of it.
    """
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction!r}")
    memory = memory or SplitMemory()
    ids = [image_identity(item) for item in items]
    members: dict[Hashable, list[int]] = {}
    for i, stratum in enumerate(strata):
        members.setdefault(stratum, []).append(i)
    quotas = validation_quotas({s: len(m) for s, m in members.items()}, val_fraction)
    validation: set[int] = set()
    for stratum, indices in members.items():
        validation |= _stratum_validation(stratum, indices, ids, quotas[stratum], seed, memory, what)
    return ([it for i, it in enumerate(items) if i not in validation],
            [it for i, it in enumerate(items) if i in validation])


def _stratum_validation(stratum: Hashable, indices: list[int], ids: list[str], quota: int, seed: int,
                        memory: SplitMemory, what: str) -> set[int]:
    """The indices of one stratum's validation images: those the line validated on, then new ones by rank to fill
    the quota."""
    kept = [i for i in indices if ids[i] in memory.validation]
    new = sorted((i for i in indices if ids[i] not in memory.trained and ids[i] not in memory.validation),
                 key=lambda i: (rank_key(ids[i], seed), ids[i]))
    chosen = kept + new[:max(0, quota - len(kept))]
    if len(indices) >= 2 and not chosen:
        raise ValueError(f"{stratum}: the served model trained on all {len(indices)} of these {what}, so none is "
                         f"left to validate on without memory of it (those it was validated on were relabelled or "
                         f"deleted since); label another one")
    if len(chosen) == len(indices):
        # every image of the stratum validated on (the others relabelled or deleted): the last one ranked goes back
        # to training, as a class of one image does; that direction cannot put remembered images in validation
        back = max(chosen, key=lambda i: (rank_key(ids[i], seed), ids[i]))
        logger.warning("%s: all these %s were validation images; %r now trains", stratum, what, ids[back])
        chosen.remove(back)
    return set(chosen)
