"""Datasets that skip unreadable items with a warning naming the file and the reason.

Training and evaluation treat a bad item differently. A training epoch is a sample: replacing a bad image by the next
good one merely changes what is drawn, and keeps batches full. An evaluation is a count: a substitute would score one
image twice and hide the bad one, so there the bad item is dropped before any loader sees the dataset and recorded in
``skipped`` for the reports (each good image then counts exactly once, on one rank, whatever the sampler).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from monai.data import Dataset
from monai.transforms import Compose, OneOf, RandomizableTrait, RandomOrder, SomeOf

from monai_ext.data.datalists import first_rank
from monai_ext.io.errors import root_cause

logger = logging.getLogger(__name__)


def is_random_transform(transform: Any) -> bool:
    """Whether a transform (a ``Compose`` chain, a list of transforms, or one transform) draws random numbers.

    ``Compose`` is itself ``Randomizable`` (it forwards seeds to its members), so chains are judged by their members;
    ``OneOf``, ``SomeOf`` and ``RandomOrder`` choose at random and so are random whatever their members.
    """
    if transform is None:
        return False
    if isinstance(transform, (OneOf, SomeOf, RandomOrder)):
        return True
    if isinstance(transform, Compose):
        return any(is_random_transform(t) for t in transform.transforms)
    if isinstance(transform, (list, tuple)):
        return any(is_random_transform(t) for t in transform)
    return isinstance(transform, RandomizableTrait)


def _failed_on_any_rank(failed: dict[int, str]) -> dict[int, str]:
    """``{index: reason}`` of the items any rank failed to read, the same on every rank (one ``all_gather_object``);
    the reason of an item that only some ranks failed to read names those ranks."""
    gathered: list[dict[int, str]] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, failed)
    union: dict[int, str] = {}
    for index in sorted({i for found in gathered for i in found}):
        ranks = [rank for rank, found in enumerate(gathered) if index in found]
        reason = gathered[ranks[0]][index]
        union[index] = reason if len(ranks) == len(gathered) else f"{reason} (on rank(s) {ranks} only)"
    return union


def _warn_once_per_job(message: str, *args: Any) -> None:
    """Warn on rank 0 only: under DDP every rank screens the same evaluation list, one warning per file suffices."""
    if first_rank():
        logger.warning(message, *args)


class SkipCorruptDataset(Dataset):
    """``monai.data.Dataset`` that skips items whose loading or transforms fail, with a warning naming the file.

    Two behaviours, chosen by ``evaluation``:

    * training (``evaluation=False``): a failed item is replaced by the next good one, so batches keep their size and
      a long run is never stopped by one bad file. Each bad file is reported once per process. The data is read
      lazily, as by ``monai.data.Dataset``.
    * evaluation (``evaluation=True``): every item is run through ``transform`` once, at construction, and the
      unreadable ones are removed from ``data`` and listed in :attr:`skipped`. The length is then the number of good
      items, so any sampler (``UnpaddedShardSampler`` included) and any collate see only good items and each is
      evaluated exactly once. Every DDP rank screens the same list; with ``agree_across_ranks`` they then drop the
      union of what each found unreadable (a node whose copy lacks a file, a file still syncing, a passing network
      file system error), because shards drawn from lists that differ between ranks count some items twice and
      others never. An item that passed the screening but fails later (the file changed during the run) raises
      instead of being replaced.

    By default (``evaluation=None``) a dataset whose transform is random (augmentation) is a training one and a
    deterministic one is an evaluation one: the bundles build their training and evaluation datasets with the same
    class, and the augmentation is what tells them apart.

    Args:
        data: datalist of dicts.
        transform: MONAI transform chain.
        name_key: key whose value names the item in warnings and in :attr:`skipped`.
        evaluation: drop unreadable items (True) or replace them (False); None: decided from ``transform``.
        agree_across_ranks: (evaluation, under ``torch.distributed``) drop on every rank the items any rank found
            unreadable, through one collective; every rank must then build the dataset, in the same order (the
            bundles' validation datasets). Off for datasets one rank builds alone (the probe's, the monitor's).
        part: what the datalist is, for the error when none of its items can be read ("the validation part").
        remedy: what the user can do then, appended to that error (a bundle knows its settings; this class not).

    Attributes:
        skipped: ``[{name_key: value, "reason": "ErrorType: message"}]`` for each item dropped at screening (evaluation)
            or replaced so far in this process (training; items found bad in loader workers are not seen here).

    Raises:
        ValueError: the datalist is empty, or (evaluation) no item of it can be read.
    """

    def __init__(self, data: Sequence[dict[str, Any]], transform: Any = None, name_key: str = "image",
                 evaluation: bool | None = None, agree_across_ranks: bool = False, part: str = "the dataset",
                 remedy: str = "") -> None:
        if len(data) == 0:
            raise ValueError(f"the datalist of {part} is empty" if part != "the dataset" else "the datalist is empty")
        self.name_key = name_key
        self.part, self.remedy = part, remedy
        self.evaluation = not is_random_transform(transform) if evaluation is None else bool(evaluation)
        self.skipped: list[dict[str, str]] = []
        self.bad: set[int] = set()
        self.agree_across_ranks = bool(agree_across_ranks)
        super().__init__(data, transform)
        if self.evaluation:
            self.data = self._screen()

    def _name(self, index: int) -> str:
        return str(self.data[index].get(self.name_key, index))

    def _record(self, index: int, error: Exception) -> None:
        reason = root_cause(error)
        self.skipped.append({self.name_key: self._name(index), "reason": reason})
        # training ranks meet different bad files, each warns of its own; evaluation ranks all screen the same list
        warn = _warn_once_per_job if self.evaluation else logger.warning
        warn("skipping unreadable image %s: %s", self._name(index), reason)

    def _screen(self) -> list[dict[str, Any]]:
        """The items whose transform succeeds; the others go to :attr:`skipped`.

        Decoding each file is the only reliable test of readability (a zero-byte, truncated or mislabelled file has
        a name like any other); the result is discarded, so memory stays that of a plain ``Dataset``.
        """
        failed: dict[int, str] = {}
        for index in range(len(self.data)):
            try:
                super()._transform(index)
            except Exception as e:  # noqa: BLE001 - any decoder or transform error means this one file is unusable
                failed[index] = root_cause(e)
        if self.agree_across_ranks and dist.is_available() and dist.is_initialized():
            failed = _failed_on_any_rank(failed)
        for index, reason in sorted(failed.items()):
            self.skipped.append({self.name_key: self._name(index), "reason": reason})
            _warn_once_per_job("skipping unreadable image %s: %s", self._name(index), reason)
        good = [item for index, item in enumerate(self.data) if index not in failed]
        if not good:
            reasons = "; ".join(f"{s[self.name_key]}: {s['reason']}" for s in self.skipped[:3])
            # which part is left empty, and what to do: "none of the 1 items of the dataset" named neither
            raise ValueError(f"none of the {len(self.data)} items of {self.part} can be read ({reasons}"
                             f"{'; ...' if len(self.skipped) > 3 else ''}){'; ' + self.remedy if self.remedy else ''}")
        if self.skipped:
            logger.info("%d of %d items are unreadable and left out of the evaluation", len(self.skipped),
                        len(self.data))
        return good

    def _transform(self, index: int) -> Any:
        if self.evaluation:
            try:
                return super()._transform(index)
            except Exception as e:  # noqa: BLE001 - re-raised with the file's name; a substitute would count twice
                raise RuntimeError(f"{self._name(index)} was readable when the evaluation started but failed now: "
                                   f"{root_cause(e)}") from e
        for step in range(len(self.data)):
            i = (index + step) % len(self.data)
            if i in self.bad:
                continue
            try:
                return super()._transform(i)
            except Exception as e:  # noqa: BLE001 - any decoder or transform error means this one file is unusable
                self.bad.add(i)
                self._record(i, e)
        raise RuntimeError(f"every item of {self.part} failed to load"
                           f"{'; ' + self.remedy if self.remedy else ''}")


def first_readable(data: Sequence[dict[str, Any]], transform: Any, count: int, key: str = "image",
                   name_key: str = "image") -> torch.Tensor:
    """Stack the ``key`` outputs of ``transform`` for the first ``count`` items of ``data`` that it reads: (K, ...).

    Read in order and only until ``count`` are found: a grid of four pictures from a folder of thousands decoded
    every one of them first (:class:`SkipCorruptDataset` screens its whole list when built). An item that fails is
    skipped with a warning naming the file and the reason, as the dataset does.

    Raises:
        ValueError: ``count`` below 1, an empty ``data``, or none of its items can be read (naming a few reasons).
    """
    if count < 1:
        raise ValueError(f"need at least one image, count is {count!r}")
    if len(data) == 0:
        raise ValueError("the datalist is empty")
    images: list[torch.Tensor] = []
    failed: list[str] = []
    for item in data:
        try:
            out = transform(dict(item)) if transform is not None else item
        except Exception as e:  # noqa: BLE001 - any decoder or transform error means this one file is unusable
            name = str(item.get(name_key, "?"))
            failed.append(f"{name}: {root_cause(e)}")
            logger.warning("skipping unreadable image %s: %s", name, root_cause(e))
            continue
        images.append(torch.as_tensor(out[key]))
        if len(images) == count:
            break
    if not images:
        raise ValueError(f"none of the {len(data)} items can be read ({'; '.join(failed[:3])}"
                         f"{'; ...' if len(failed) > 3 else ''})")
    return torch.stack(images)
