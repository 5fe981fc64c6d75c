"""Classification reports after an evaluation: JSON, confusion matrix and ROC PNGs."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

from monai_ext.engines.distributed import broadcast_object, is_main_process
from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.json_values import json_tree
from monai_ext.visualize.plots import plot_confusion_matrix, plot_roc

logger = logging.getLogger(__name__)


def skipped_items(engine: Engine) -> list[dict[str, str]]:
    """The items the evaluated dataset left out as unreadable, each with its reason (``[]`` when it keeps no list).

    :class:`~monai_ext.data.datasets.SkipCorruptDataset` screens an evaluation list once when it is built, the same on
    every rank, so this list is complete on each rank without a gather.
    """
    dataset = getattr(getattr(engine, "data_loader", None), "dataset", None)
    return [dict(item) for item in getattr(dataset, "skipped", [])]


def is_new_best(score: float, best: float | None) -> bool:
    """Whether a best-only report writer (higher is better) writes ``score``: a finite score above ``best``.

    A NaN (a diverged epoch) is never the best: taken as the first best it would never be beaten, or every later
    comparison with it would pass, depending on how it is compared.
    """
    return bool(np.isfinite(score)) and (best is None or score > best)


def best_after_resume(saved: float | None, report: Path, key: str) -> float | None:
    """The best a resumed best-only report writer must beat: its checkpoint's ``saved`` best, or the higher ``key``
    score of the ``report`` file on disk.

    Checkpoints come every few epochs: the killed run may have written a better epoch's report (and model.pt, which
    :class:`~monai_ext.handlers.checkpointing.BestModelSaver` keeps the same way) after its last checkpoint, and the
    replayed epoch, computed again a little differently, would replace that report while model.pt stays. Rank 0
    reads the file and every rank takes its answer.
    """
    on_disk = broadcast_object(_score_in(report, key) if is_main_process() else None)
    finite = [float(v) for v in (saved, on_disk) if isinstance(v, (int, float)) and np.isfinite(v)]
    return max(finite) if finite else None


def _score_in(report: Path, key: str) -> float | None:
    """``report[key]`` when the file is a readable JSON report holding a number there, else None."""
    try:
        value = json.loads(report.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class ClassificationReportWriter:
    """After an evaluation, write ``<prefix>report.json``, ``<prefix>confusion_matrix.png`` and ``<prefix>roc.png``.

    The report's ``n`` counts the evaluated images; ``skipped`` lists the unreadable ones left out (see
    :func:`skipped_items`).

    Args:
        output_dir: folder of the files.
        class_names: names of the classes.
        report_name: the ``ClassificationReport`` metric's name in ``state.metric_details``.
        key_metric: the macro-F1 metric's name.
        prefix: file-name prefix (e.g. "test_").
        best_only: write only when macro-F1 improves on the best so far (during training).

    The best so far is saved in training checkpoints (``state_dict``): a resumed run does not replace the best
    epoch's report by a worse one's: it restores the higher of the checkpoint's best and the report on disk
    (:func:`best_after_resume`). A non-finite score is never the best (:func:`is_new_best`).
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: list[str], report_name: str = "report",
                 key_metric: str = "val_macro_f1", prefix: str = "", best_only: bool = False) -> None:
        self.folder = Path(output_dir)
        self.class_names = list(class_names)
        self.report_name, self.key_metric, self.prefix = report_name, key_metric, prefix
        self.best_only = best_only
        self.best: float | None = None
        self.last_report: dict[str, Any] | None = None
        self._warned_missing: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        score = float(engine.state.metrics[self.key_metric])
        if self.best_only and not is_new_best(score, self.best):
            return
        self.best = score
        report = {"macro_f1": score, **engine.state.metric_details[self.report_name]}
        report["class_names"] = self.class_names
        report["skipped"] = skipped_items(engine)  # unreadable files: not in n, not replaced by others
        self.last_report = report
        if not is_main_process():
            return
        atomic_write_bytes(self.folder / f"{self.prefix}report.json",
                           json.dumps(json_tree(report), indent=1, allow_nan=False).encode())
        title = f"macro-F1 {report['macro_f1']:.3f}"
        plot_confusion_matrix(report["confusion_matrix"], self.class_names, self.folder / f"{self.prefix}confusion_matrix.png", title)
        roc_png = self.folder / f"{self.prefix}roc.png"
        self._warn_of_missing_classes(report.get("classes_without_images") or [])
        if report["roc"]:
            plot_roc(report["roc"], report["auc"], roc_png, "ROC")
        else:  # no curve for this part (one class): an earlier run's figure must not sit beside this report
            roc_png.unlink(missing_ok=True)
            # info: the missing classes are warned of once above, and a one-class validation part meets this at
            # every epoch
            logger.info("no ROC figure (%s): a ROC curve needs images of at least two classes, and this part has "
                        "images of one", roc_png)
        logger.info("classification report: %s (n %d, %d unreadable left out; macro-F1 %.4f, accuracy %.4f, AUC %.4f)",
                    self.folder / f"{self.prefix}report.json", report["n"], len(report["skipped"]), report["macro_f1"],
                    report["accuracy"], report["auc"])

    def _warn_of_missing_classes(self, missing: list[str]) -> None:
        """Say in the log which classes the evaluated part has no image of, once per set (a validation part misses
        the same class at every epoch): the report's numbers read as if every class had been tested.

        A benign-only test part gave macro-F1 0.3333, AUC null and no ROC figure without a word.
        """
        if not missing or missing == self._warned_missing:
            return
        self._warned_missing = list(missing)
        logger.warning(
            "%s: no images of class(es) %s in the evaluated part: their recall, F1 and ROC curve are not defined, "
            "and AUC is not either when fewer than two classes have images; macro-F1 averages over the classes with "
            "images or predictions only (an absent class that was predicted counts with F1 0); see "
            "classes_without_images in the report", self.folder / f"{self.prefix}report.json", ", ".join(missing))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = best_after_resume(state.get("best"), self.folder / f"{self.prefix}report.json", "macro_f1")
