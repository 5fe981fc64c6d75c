"""Datasets that skip unreadable items with a warning naming the file and the reason."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from monai.data import Dataset

from monai_ext.io.errors import root_cause

logger = logging.getLogger(__name__)



class SkipCorruptDataset(Dataset):
    """``monai.data.Dataset`` that skips items whose loading or transforms fail, with a warning naming the file.

    A failed item is replaced by the next good one, so batches keep their size and a long run is never stopped by
    one bad file. Each bad file is reported once per process.

    Args:
        data: datalist of dicts.
        transform: MONAI transform chain.
        name_key: key whose value names the item in warnings.
    """

    def __init__(self, data: Sequence[dict[str, Any]], transform: Any = None, name_key: str = "image") -> None:
        if len(data) == 0:
            raise ValueError("the datalist is empty")
        super().__init__(data, transform)
        self.name_key = name_key
        self.bad: set[int] = set()

    def _transform(self, index: int) -> Any:
        for step in range(len(self.data)):
            i = (index + step) % len(self.data)
            if i in self.bad:
                continue
            try:
                return super()._transform(i)
            except Exception as e:  # noqa: BLE001 - any decoder or transform error means this one file is unusable
                self.bad.add(i)
                logger.warning("skipping unreadable image %s: %s", self.data[i].get(self.name_key, i), root_cause(e))
        raise RuntimeError("every item of the dataset failed to load")
