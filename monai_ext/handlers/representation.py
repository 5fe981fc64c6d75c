"""Representation quality during pretraining: kNN and tuned linear-probe accuracy of the encoder on a labelled set.

Reconstruction loss says how well the MAE fills in patches, not whether its encoder's features separate anything.
As solo-learn's and lightly's online kNN monitors do, every ``interval`` epochs this handler extracts the encoder's
features of a small labelled set (eval mode, no masking, no augmentation) and scores a cosine kNN and a tuned
logistic-regression probe (:mod:`monai_ext.engines.probe`) by stratified k-fold cross-validation over that set.
The scores go into the evaluator's metrics (hence ``metrics.json`` and MLflow, whose handlers run after this one),
into ``<output_dir>/representation.json``, and into a PNG beside the reconstruction grids.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from sklearn.model_selection import StratifiedKFold

from monai_ext.data.datasets import SkipCorruptDataset
from monai_ext.engines.distributed import is_main_process
from monai_ext.engines.probe import evaluate_frozen_features, extract_features
from monai_ext.io.atomic import atomic_write_text
from monai_ext.io.json_values import json_tree
from monai_ext.io.settings import path_setting, setting_text
from monai_ext.visualize.curves import plot_curves

logger = logging.getLogger(__name__)
#: A coarser C sweep than the bundle's probe: the monitor runs every few epochs and must stay cheap.
MONITOR_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
#: Images of each class the monitor's nested folds need: one to test, and two left to fit and to tune on.
MIN_PER_CLASS = 3


def monitor_items(datalist_file: str | os.PathLike | None, cache_dir: str | os.PathLike, per_class: int = 30,
                  seed: int = 0) -> tuple[list[dict[str, Any]], list[str]]:
    """The labelled set the monitor scores: every item of a classification datalist (train, validation and test
    pooled), or else ``per_class`` images per class of the subtle lesion benchmark.

    Returns:
        (items ``{"image", "label"}``, class names).
    """
    from monai_ext.data.datalists import read_split
    from monai_ext.data.downstream import folder_protocol
    from monai_ext.data.lesion_benchmark import subtle_lesion_dataset

    datalist_file = path_setting(datalist_file, "monitor_datalist")
    if datalist_file is not None:
        split = read_split(datalist_file)
        items = [it for part in ("train", "validation", "test") for it in split.get(part, [])]
        return items, list(split["class_names"])
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < MIN_PER_CLASS:
        raise ValueError(f"monitor_per_class must be a whole number of at least {MIN_PER_CLASS}, got {per_class!r}")
    folder = subtle_lesion_dataset(setting_text(cache_dir, "cache_dir"), per_class=per_class, seed=seed + 500)
    protocol = folder_protocol(folder, folds=min(5, per_class))  # only to list the items and classes
    items = {it["image"]: it for part in protocol.splits[0].values() for it in part}
    return [items[k] for k in sorted(items)], protocol.class_names


def cross_validated_scores(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str], folds: int = 5,
                           seed: int = 0, cs: Sequence[float] = MONITOR_CS) -> dict[str, float]:
    """Mean test scores over stratified folds: each fold's rest split into train and validation (for C and k).

    Args:
        features: (N, D); labels: (N,).
        class_names: K names.
        folds: number of folds (capped by the smallest class).
        seed: of the fold assignment.
        cs: the probe's C sweep.

    Returns:
        ``knn_accuracy``, ``knn_macro_f1``, ``probe_accuracy``, ``probe_macro_f1``, ``probe_auc`` (fold means).
    """
    folds = min(folds, int(np.bincount(labels).min()))
    if folds < MIN_PER_CLASS:
        raise ValueError(f"need at least {MIN_PER_CLASS} images of every class for the monitor, got counts "
                         f"{np.bincount(labels)!r}")
    scores: dict[str, list[float]] = {}
    outer = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for k, (rest, test) in enumerate(outer.split(features, labels)):
        # the rest of a fold holds at least folds - 1 images of each class: as many inner splits at most
        inner = StratifiedKFold(min(4, folds - 1), shuffle=True, random_state=seed + k)
        fit, val = next(inner.split(features[rest], labels[rest]))
        splits = {"train": (features[rest][fit], labels[rest][fit]),
                  "validation": (features[rest][val], labels[rest][val]), "test": (features[test], labels[test])}
        _, record = evaluate_frozen_features(splits, class_names, cs=cs, seed=seed)
        for name, report in (("knn", record["knn_test"]), ("probe", record["linear_test"])):
            for metric in ("accuracy", "macro_f1") + (("auc",) if name == "probe" else ()):
                scores.setdefault(f"{name}_{metric}", []).append(report[metric])
    return {k: float(np.nanmean(v)) for k, v in scores.items()}


def _check_class_counts(labels: Sequence[int], class_names: Sequence[str], skipped: int) -> None:
    """Refuse a monitor set with fewer than :data:`MIN_PER_CLASS` readable images of a class, naming the classes.

    Raises:
        ValueError: with the counts per class.
    """
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(class_names))
    short = {name: int(n) for name, n in zip(class_names, counts) if n < MIN_PER_CLASS}
    if short:
        unread = f" ({skipped} unreadable image(s) left out)" if skipped else ""
        raise ValueError(f"the representation monitor needs at least {MIN_PER_CLASS} readable images of every "
                         f"class; too few: {short!r}{unread}")


def chance_lines(labels: Sequence[int], num_classes: int) -> list[tuple[float, str]]:
    """The monitor plot's reference lines ``(y, label)``: what features carrying nothing score on this set.

    Accuracy: the largest class's share (always answering it), which is 1/K only on a balanced set. A line at 1/K
    made noise look like a representation on an imbalanced datalist: at 90 % of one class, random features scored a
    kNN accuracy of 0.84 and a probe accuracy of 0.73, far above a "chance" line at 0.5. AUC: 0.5 whatever the
    balance.

    Args:
        labels: the class index of each image of the monitor set.
        num_classes: K.

    Raises:
        ValueError: no labels, quoting them.
    """
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes)
    if counts.sum() == 0:
        raise ValueError(f"chance levels need labelled images, got labels {list(labels)!r}")
    share = float(counts.max() / counts.sum())
    if np.isclose(share, 0.5):  # accuracy and AUC at the same height: one line, one legend entry
        return [(0.5, "chance (accuracy and AUC)")]
    balanced = bool((counts == counts[0]).all())
    accuracy = f"chance accuracy (1/{num_classes})" if balanced else f"chance accuracy (largest class, {share:.2f})"
    return [(share, accuracy), (0.5, "chance AUC")]


class RepresentationMonitor:
    """Every ``interval`` epochs, score the encoder's frozen features on a labelled set (see the module docstring).

    Attach to the validation evaluator before the metrics history and tracking handlers; the values appear in the
    evaluator's ``state.metrics`` as ``monitor_<score>``.

    Args:
        network: the MAE being pretrained (or any encoder :func:`~monai_ext.engines.probe.encoder_features` takes).
        items: labelled datalist ``{"image", "label"}``.
        class_names: K names.
        transform: loading + normalisation (the bundle's validation preprocessing; no augmentation).
        output_dir: run output folder.
        interval: epochs between checks (0: never); the last epoch (``max_epochs``) and a validation at the start
            (epoch 0, the ValidationHandler's ``exec_at_start``: the initial weights' baseline) are always checked.
        max_epochs: the trainer's epochs (the evaluator's own count restarts every validation).
        device: where features are computed.
        batch_size: of the extraction loader.
        folds: cross-validation folds over ``items``.
        seed: fold assignment.
    """

    def __init__(self, network: torch.nn.Module, items: Sequence[Mapping[str, Any]], class_names: Sequence[str],
                 transform: Any, output_dir: str | os.PathLike, interval: int = 1, max_epochs: int | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 32, folds: int = 5, seed: int = 0) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0 (0 = off), got {interval!r}")
        if interval and (len(class_names) < 2 or not items):
            raise ValueError(f"the monitor needs labelled items of at least two classes, got {len(items)} items of "
                             f"{list(class_names)!r}")
        self.network, self.class_names = network, list(class_names)
        self.transform, self.interval, self.max_epochs, self.device = transform, interval, max_epochs, device
        # screened now, before training: an unreadable image (a user's datalist) is left out and named, not a crash
        # at the first check, and too few images of a class is said before the first epoch
        self.dataset = SkipCorruptDataset(list(items), transform, evaluation=True) if interval else None
        self.items = list(self.dataset.data) if self.dataset is not None else list(items)
        if interval:
            _check_class_counts([int(it["label"]) for it in self.items], self.class_names, len(self.dataset.skipped))
        self.batch_size, self.folds, self.seed = batch_size, folds, seed
        self.folds_used = folds  # fewer where a class has fewer images (set by each check)
        self.json_path = Path(output_dir) / "representation.json"
        self.png_path = Path(output_dir) / "reconstructions" / "representation_quality.png"
        self.history: list[dict[str, float]] = []

    def attach(self, engine: Engine) -> None:
        if self.interval:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` is checked."""
        return bool(self.interval) and (epoch % self.interval == 0 or epoch == self.max_epochs)

    def scores(self) -> dict[str, float]:
        """Extract the features now and score them (the network's train/eval mode is restored)."""
        from monai.data import DataLoader

        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False)
        features, labels = extract_features(self.network, loader, self.device)
        self.folds_used = min(self.folds, int(np.bincount(labels).min()))  # as cross_validated_scores caps them
        return cross_validated_scores(features, labels, self.class_names, self.folds, self.seed)

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch  # MONAI's Evaluator.run(global_epoch) numbers it with the trainer's epoch
        for key in [k for k in engine.state.metrics if k.startswith("monitor_")]:
            del engine.state.metrics[key]  # the evaluator's state outlives a run: no stale scores on unchecked epochs
        if not self.due(epoch) or not is_main_process():
            return
        scores = self.scores()
        engine.state.metrics.update({f"monitor_{k}": v for k, v in scores.items()})
        self.history = [h for h in self.history if h["epoch"] < epoch] + [{"epoch": epoch, **scores}]
        atomic_write_text(self.json_path, json.dumps(json_tree(self.history), indent=1, allow_nan=False))
        epochs = [h["epoch"] for h in self.history]
        curves = {name: (epochs, [h[key] for h in self.history]) for name, key in
                  (("kNN accuracy", "knn_accuracy"), ("probe accuracy", "probe_accuracy"), ("probe AUC", "probe_auc"))}
        # scores on their whole range with what guessing scores, so that fold-to-fold noise does not look like a trend
        k = len(self.class_names)
        chance = chance_lines([int(item["label"]) for item in self.items], k)
        plot_curves(curves, self.png_path, f"encoder features on {len(self.items)} labelled images "
                    f"({k} classes, {self.folds_used}-fold)", "epoch", "accuracy / AUC", ylim=(0, 1),
                    reference_lines=chance, integer_x=True)
        logger.info("epoch %d representation: %s", epoch, {k: round(v, 4) for k, v in scores.items()})

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = list(state.get("history", []))
