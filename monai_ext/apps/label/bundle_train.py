"""What the MONAI Label train tasks share: run a bundle's ``train.yaml`` from the served checkpoint on the
datastore's labels and publish the best model atomically.

MONAI Label runs a train request in a child process of the server. A task writes the annotators' labels as the
bundle's datalist, runs the bundle's own ``train.yaml`` (``monai.bundle.run``) from the checkpoint served now, and
publishes the best model at ``<app_dir>/model/<model_name>.pt``, which the infer task picks up on its next request.
The classification and segmentation tasks differ only in how labels become a datalist, which settings the
checkpoint fixes and which validation metric they report.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from monai_ext.apps.label.lineage import Lineage, publish, read_record, serves_published
from monai_ext.apps.label.split import SplitMemory, trained_before
from monai_ext.apps.label.train_settings import TRAIN_DEFAULTS, bundle_train_settings, train_parameters
from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.errors import root_cause


class BundleTrainTask(TrainTask):
    """Fine-tune a bundle on the datastore's labels; subclasses say how labels become a datalist.

    Args:
        description: shown to clients.
        bundle_root: the bundle folder.
        served: returns the checkpoint being served now (the published one after a first training).
        published: where the fine-tuned model is published.
        lineage: the app's checkpoint and studies, recorded with each published model.
        class_names: the served model's classes.
        overrides: further bundle settings (the app's ``overrides`` conf); they win over the checkpoint's.
        device: the app's ``device`` conf (``cpu``, ``cuda:1``); None lets the bundle choose (CUDA 0 when there is
            one). Training goes where serving goes: a team that keeps GPU 0 for other work says so once.
    """

    #: the validation metric in the bundle's ``metrics.json`` whose best value the summary reports
    metric: str = ""
    #: what one training item is, for the log
    item: str = "labelled images"

    def __init__(self, description: str, bundle_root: Path, served: Callable[[], Path], published: Path,
                 lineage: Lineage, class_names: Sequence[str], overrides: Mapping[str, Any],
                 device: str | None = None) -> None:
        if not self.metric:
            raise TypeError(f"{type(self).__name__} must name its validation metric (class attribute 'metric')")
        super().__init__(description)
        self.bundle_root, self.served, self.published = Path(bundle_root), served, Path(published)
        self.lineage = lineage
        self.class_names, self.overrides, self.device = list(class_names), dict(overrides), device
        self.work = self.published.with_suffix("")  # <app_dir>/model/<model_name>/

    @abstractmethod
    def write_datalist(self, items: Sequence[Mapping[str, str]], out: Path, params: Mapping[str, Any],
                       memory: SplitMemory | None = None) -> tuple[Path, dict[str, str], dict[str, str]]:
        """The datastore's labelled ``items`` as the bundle's datalist at ``out``, its validation part stable across
        rounds (:mod:`monai_ext.apps.label.split`: ``memory`` is the served model's line, :meth:`split_memory`);
        returns it, the skipped labels and the suspect ones (trained on, but likely wrong), each as
        {label file: reason}."""

    def split_memory(self, served: Path) -> SplitMemory:
        """Which datastore images the ``served`` model's line trained and validated on: the ``split`` of its lineage
        record where it is this app's published model (:func:`~monai_ext.apps.label.lineage.publish` writes it);
        empty for the configured checkpoint, which this app never trained, and for a model published before the
        record held it."""
        if Path(served).absolute() != self.published.absolute() or not serves_published(self.published, self.lineage):
            return SplitMemory()
        return SplitMemory.from_record(read_record(self.published), self.lineage.studies)

    def served_trained_images(self, served: Path) -> set[str]:
        """The real paths of the images the ``served`` checkpoint's record says it trained (or was selected) on; by
        default none (a task whose bundle records none)."""
        return set()

    def published_memory(self, memory: SplitMemory, split: Mapping[str, Any], served: Path) -> SplitMemory:
        """The ``split`` record of the model trained on ``split`` from ``served`` (whose memory is ``memory``).

        Where ``memory`` comes from no record (a model published before the record held it, or a copy of a
        fine-tune served as the configured checkpoint), this round's validation images that the served checkpoint
        lists among its ``trained_images`` are recorded as trained: recorded as validated only, they counted as new
        to the line for good, and the publication check scored the served model on images it remembers.
        """
        return memory.after(split, () if memory.recorded else trained_before(split, self.served_trained_images(served)))

    def labelled_items(self, datastore: Datastore) -> list[dict[str, Any]]:
        """``{"image", "label"}`` of the images this task trains on: by default their ``final`` labels."""
        return datastore.datalist()

    @abstractmethod
    def checkpoint_overrides(self, checkpoint: Path) -> dict[str, Any]:
        """Bundle settings the checkpoint's architecture record fixes."""

    def config(self) -> dict[str, Any]:
        """The request parameters and their defaults, shown to clients by ``/info/``."""
        return dict(TRAIN_DEFAULTS)

    def stats(self) -> dict[str, Any]:
        """The last run's summary, if any."""
        path = self.work / "train_stats.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def __call__(self, request: Mapping[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Train from the served model, publish atomically, return the run's summary.

        Raises:
            ValueError: a parameter of the wrong type or range, too few labels, or a result not worth publishing
                (:meth:`best_metric`).
            RuntimeError: the bundle's training failed; its message is the root cause on one line.
        """
        params = train_parameters(request)
        self.work.mkdir(parents=True, exist_ok=True)
        start_from, run_dir = Path(self.served()), self.work / "run"
        memory = self.split_memory(start_from)
        datalist, skipped, suspect = self.write_datalist(self.labelled_items(datastore), self.work / "datalist.json",
                                                         params, memory)
        split = json.loads(datalist.read_text())
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: no resume from an older training's files
        try:
            self._run_bundle(datalist, start_from, run_dir, params, train_size=len(split["train"]))
        except Exception as e:
            # MONAI Label shows the last 20 lines of a failed train: the reason must be the last, not the bundle's
            # wrapping ("Failed to evaluate ConfigExpression ..."), which left it in the server's log alone
            raise RuntimeError(f"training failed, {self.published.name} kept: {root_cause(e)}") from e
        history = json.loads((run_dir / "eval" / "metrics.json").read_text())
        best = self.best_metric(history)
        refusal = self.not_worth_publishing(run_dir, datalist, start_from, params)
        if refusal:
            raise ValueError(f"the best model is not published, {self.published.name} kept: {refusal}; label more "
                             f"images or train longer")
        # atomic: the serving process never reads a half-written model
        # the published model's line now trained on this training part too: the next round keeps every image's part
        kept = publish(run_dir / "models" / "model.pt", self.published, self.lineage,
                       {"split": self.published_memory(memory, split, start_from).as_record()})
        summary = {"published": str(self.published), "started_from": str(start_from), "train": len(split["train"]),
                   "validation": len(split["validation"]), "skipped_labels": skipped,
                   # in the summary that clients read (/info/'s train stats, /train/'s details), not only in the
                   # training process's log: a mask inverted by an export trains the wrong target in silence
                   "suspect_labels": suspect, "epochs": len(history),
                   **({"kept_previous": str(kept)} if kept else {}), f"best_{self.metric}": best}
        atomic_write_bytes(self.work / "train_stats.json", json.dumps(summary, indent=1).encode())
        log = logging.getLogger(type(self).__module__)
        for label, reason in suspect.items():
            log.warning("trained on a suspect label %s: %s", label, reason)
        log.info("fine-tuned on %d %s: %s", summary["train"], self.item, summary)
        return summary

    def best_metric(self, history: Sequence[Mapping[str, Any]]) -> float:
        """The best validation value of a run's ``metrics.json`` ``history``, refusing a model not worth publishing.

        The published model replaces the served one at once, for every annotator: a model whose validation never
        gave a finite value, or gave 0 at best (a Dice of 0.0: no lesion pixel of any validation image found; a
        macro F1 of 0.0: no image's class right) cannot be better than it and is not published.

        Raises:
            ValueError: no epoch had a finite value, or the best is not above 0; the served model is kept.
        """
        values = [h.get(self.metric) for h in history]
        finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]  # null: undefined, NaN
        if not finite:
            raise ValueError(f"no validation of the {len(history)} epochs gave a finite {self.metric} (got "
                             f"{values!r}): the model cannot be judged, {self.published.name} kept; check the "
                             f"validation labels (a Dice needs a lesion in some mask)")
        if max(finite) <= 0:
            raise ValueError(f"the best {self.metric} of {len(history)} epochs is {max(finite)!r}: the model is no "
                             f"better than none, {self.published.name} kept; train longer, on more labels, or with "
                             f"another learning rate")
        return max(finite)

    def not_worth_publishing(self, run_dir: Path, datalist: Path, served: Path, params: Mapping[str, Any]) -> str | None:
        """Why the run's best model must not replace the ``served`` one though its metric is positive, or None; by
        default None (a positive Dice found lesion pixels).

        Args:
            run_dir: the run's folder (``eval/`` holds its reports).
            datalist: the run's datalist.
            served: the checkpoint served now, which the run started from.
            params: the checked request parameters.
        """
        return None

    def _run_bundle(self, datalist: Path, start_from: Path, run_dir: Path, params: Mapping[str, Any],
                    train_size: int) -> None:
        from monai.bundle import run

        settings = bundle_train_settings(self.bundle_root, datalist, start_from, run_dir, params, train_size,
                                         self.checkpoint_overrides(start_from), self.overrides, self.device)
        run(config_file=str(self.bundle_root / "configs" / "train.yaml"), **settings)
