"""Which model the app serves: a fine-tune published by its train task, only while the app runs from the checkpoint
and on the studies that fine-tune came from.

The train task publishes at ``<app_dir>/model/<model_name>.pt``, and the app dir outlives a run: started later with
another ``checkpoint`` (a new base model, another task's classes) or on another studies folder, the app served the
old fine-tune in its place, its classes included, with nothing but a log line to say so. Each published model now has
a record beside it (``<model_name>.lineage.json``: the configured checkpoint's path and SHA-256, the studies); the
app serves the published model only when the record matches how it was started, and a training that would replace
a model of another lineage first keeps it as ``<model_name>.superseded-<UTC time>.pt`` with its record. A model of the
same lineage is replaced, its last version kept as ``<model_name>.previous.pt`` (one file, replaced by each training):
a fine-tune that turned out worse is undone by copying it back over ``<model_name>.pt``.

The record also keeps the train task's ``split``: which datastore images the model's line trained on and which it
only validated on (:class:`~monai_ext.apps.label.split.SplitMemory`), so that the next training keeps each image's
part. It is cumulative, so it stays true (if stricter than needed) for a ``previous`` model copied back.

No MONAI Label import: the main environment tests it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.checkpoints import sha256_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lineage:
    """Where a served model comes from: the app's configured checkpoint and its studies.

    Attributes:
        checkpoint: the configured checkpoint's absolute path (for messages; the hash decides).
        sha256: its content's SHA-256 (a copy or a move keeps the lineage; a new file of the same name does not).
        studies: the studies folder's absolute path, or the DICOMweb address.
    """

    checkpoint: str
    sha256: str
    studies: str

    @classmethod
    def of(cls, checkpoint: str | os.PathLike, studies: str) -> Lineage:
        """The lineage of an app started from ``checkpoint`` on ``studies`` (a missing checkpoint hashes to "")."""
        path = Path(checkpoint).expanduser().absolute()
        where = studies if studies.startswith(("http://", "https://")) else str(Path(studies).expanduser().absolute())
        return cls(str(path), sha256_of(path) if path.is_file() else "", where)

    def matches(self, record: dict | None) -> bool:
        """Whether a published model's ``record`` comes from this checkpoint's content and these studies."""
        return bool(record) and record.get("sha256") == self.sha256 and record.get("studies") == self.studies


def lineage_file(published: Path) -> Path:
    """The record beside a published model: ``model/usf_mae_classifier.pt`` ->
    ``model/usf_mae_classifier.lineage.json``."""
    return published.with_name(f"{published.stem}.lineage.json")


def read_record(published: Path) -> dict | None:
    """The published model's lineage record; None when there is none or it cannot be read (older publications)."""
    try:
        value = json.loads(lineage_file(published).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def serves_published(published: Path, lineage: Lineage) -> bool:
    """Whether the app started with ``lineage`` serves the model published at ``published``."""
    return published.is_file() and (lineage.matches(read_record(published)) or is_configured(published, lineage))


def is_configured(published: Path, lineage: Lineage) -> bool:
    """Whether the app was started with its own published file as the checkpoint: each training then replaces the
    configured checkpoint in place, which the user chose; its content changes, its lineage does not."""
    return Path(lineage.checkpoint) == published.expanduser().absolute()


def explain_unserved(published: Path, lineage: Lineage) -> None:
    """Warn, at start-up, that a published model of another lineage is kept but not served."""
    if not published.is_file() or serves_published(published, lineage):
        return
    record = read_record(published)
    origin = (f"was fine-tuned from {record.get('checkpoint')!r} on {record.get('studies')!r}" if record
              else "has no lineage record (published by an earlier version)")
    logger.warning("%s %s, not from this app's checkpoint %r on %r: serving the checkpoint; a training keeps that "
                   "model as %s.superseded-<time>.pt (to serve it, copy it out of %s and start with --conf "
                   "checkpoint <the copy>)", published, origin, lineage.checkpoint, lineage.studies, published.stem,
                   published.parent)


def previous_file(published: Path) -> Path:
    """Where the last replaced model of the published one's own lineage is kept: ``model/usf_mae_segmenter.pt`` ->
    ``model/usf_mae_segmenter.previous.pt``."""
    return published.with_name(f"{published.stem}.previous{published.suffix}")


def publish(model_file: Path, published: Path, lineage: Lineage,
            extra: Mapping[str, Any] | None = None) -> Path | None:
    """Publish ``model_file`` at ``published`` atomically with its lineage record (and ``extra`` entries in it: the
    train task's ``split``, :class:`~monai_ext.apps.label.split.SplitMemory`).

    A model already there of another lineage is copied aside first (copied, not moved: it is still served until
    the new one is in place), its :func:`previous_file` moved beside the copy. One of the same lineage (a fine-tune of this app, or the published file configured as
    the checkpoint, which the user chose to train in place) is copied to :func:`previous_file`, replacing the copy of
    the training before: a fine-tune that passed validation but serves worse was otherwise lost for good, and each
    later training started from it.

    Returns:
        Where the replaced model of another lineage was kept, or None.
    """
    kept = None
    if published.is_file() and not serves_published(published, lineage):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        kept = published.with_name(f"{published.stem}.superseded-{stamp}{published.suffix}")
        # atomic: the warning below sends users to this copy to serve it again, so it must never be half-written
        atomic_write_bytes(kept, published.read_bytes())
        if lineage_file(published).is_file():
            atomic_write_bytes(lineage_file(kept), lineage_file(published).read_bytes())
        if previous_file(published).is_file():
            # the old lineage's undo copy goes with it: copied back over the new lineage's model, it would be served
            # under the new record, another checkpoint's model (and classes) taken for this app's
            previous_file(published).replace(previous_file(kept))
        logger.warning("the model at %s came from another checkpoint or studies folder: kept as %s", published, kept)
    elif published.is_file():  # its record stays valid for it: copied back, it is served again
        atomic_write_bytes(previous_file(published), published.read_bytes())
        logger.info("the model replaced at %s is kept as %s (copy it back to serve it again)", published,
                    previous_file(published))
    # the model first: a crash before the record leaves a model that is not served, never a record that lies
    atomic_write_bytes(published, model_file.read_bytes())
    atomic_write_bytes(lineage_file(published), json.dumps({**(extra or {}), **asdict(lineage)}, indent=1).encode())
    return kept
