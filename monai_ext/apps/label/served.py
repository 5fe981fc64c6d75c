"""The model behind a MONAI Label infer task, reloaded when its checkpoint file is replaced."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)
Model = TypeVar("Model")


class ServedModel(Generic[Model]):
    """Holds the model of the checkpoint to serve now and reloads it when that file changes.

    A train task publishes a fine-tuned checkpoint atomically: a new file (a new inode, since it existed beside the
    old one before the rename) replaces the old one, and the next request loads it. The inode is compared besides
    the modification time, whose clock may not tick between two quick writes. Reloading is locked because MONAI
    Label may run infer requests in a thread pool.

    Args:
        load: builds the model from a checkpoint path.
        served: returns the checkpoint to serve now.
    """

    def __init__(self, load: Callable[[Path], Model], served: Callable[[], Path]) -> None:
        self._load, self._served = load, served
        self._version: tuple[Path, int, int] | None = None
        self._model: Model | None = None
        self._lock = threading.Lock()

    def current(self) -> Model:
        """The model of the served checkpoint, loaded now if the file is new or was replaced."""
        path = Path(self._served())
        stat = path.stat() if path.is_file() else None  # a missing file: the loader says so
        version = (path, stat.st_ino, stat.st_mtime_ns) if stat else (path, -1, -1)
        with self._lock:
            if version != self._version:
                logger.info("loading %s", path)
                self._model, self._version = self._load(path), version
            return self._model
