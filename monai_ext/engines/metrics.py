"""Classification metrics as ignite metrics (distributed-aware), computed with scikit-learn.

The headline is macro-F1 (the USF-MAE paper's F1); the report adds accuracy, balanced accuracy, one-vs-rest AUC,
per-class precision/recall/F1, the confusion matrix and ROC curves.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from monai.utils import evenly_divisible_all_gather
from sklearn import metrics as skm

from monai_ext.engines.distributed import collective_device


def classification_report(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of predicted probabilities against integer labels.

    Args:
        probs: (N, K) class probabilities, or any one increasing function of them such as :func:`log_odds`
            (every metric here depends only on each column's order and each row's argmax, which it keeps).
        labels: (N,) integer labels in [0, K).
        class_names: K names.

    Returns:
        JSON-serialisable dict: macro_f1 (over the classes in ``labels`` or predicted, :func:`_macro_f1`),
        accuracy, balanced_accuracy, auc (two classes: ROC AUC of class 1;
        more: mean one-vs-rest AUC over the classes present in ``labels``; NaN when fewer than two are present),
        per_class (precision, recall, F1 NaN where undefined: no prediction, no support), confusion_matrix
        (rows = truth), roc (per class fpr/tpr), n, classes_without_images (the class names no label is of: a
        test part missing a class, whose recall, F1 and ROC curve are not defined).

    Raises:
        ValueError: no labels (an empty part), probabilities not (N, K), or a label outside [0, K).
    """
    k = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise ValueError(f"probabilities must have shape (N, {k}), got {probs.shape!r}")
    labels = np.asarray(labels)
    if len(labels) != len(probs):
        raise ValueError(f"{len(probs)} probability rows for {len(labels)} labels")
    if len(labels) == 0:  # scikit-learn's own refusal ("Found empty input array") says nothing of the data
        raise ValueError("no image to score: the evaluated part is empty (every image of it unreadable, or none "
                         "given)")
    if labels.min() < 0 or labels.max() >= k:  # outside [0, K): dropped from the matrix, AUC of the wrong class
        raise ValueError(f"labels must be class indices in [0, {k}) for {k} class names, got values from "
                         f"{int(labels.min())} to {int(labels.max())}")
    pred = probs.argmax(axis=1)
    classes = list(range(k))
    # NaN (null in the report) where a value is undefined: a class absent from the truth has no recall, one never
    # predicted no precision; 0.0 there read as "every malignant case missed" on a test part without one
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, pred, labels=classes, zero_division=np.nan
    )
    report: dict[str, Any] = {
        "n": len(labels),
        "macro_f1": _macro_f1(labels, pred, classes),
        "accuracy": float(skm.accuracy_score(labels, pred)),
        "balanced_accuracy": _balanced_accuracy(labels, pred),
        "auc": _auc(probs, labels, k),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
        "confusion_matrix": skm.confusion_matrix(labels, pred, labels=classes).tolist(),
        "roc": {},
        "classes_without_images": [name for name, count in zip(class_names, support) if count == 0],
    }
    for c, name in enumerate(class_names):
        positives = labels == c
        if positives.any() and (~positives).any():
            fpr, tpr, _ = skm.roc_curve(positives, probs[:, c])
            report["roc"][name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    return report


def _macro_f1(labels: np.ndarray, pred: np.ndarray, classes: list[int]) -> float:
    """Macro-F1 over the classes in the truth or the predictions (scikit-learn's default set).

    A class that is neither (a rare class missing from a small test fold) has no F1: counting it as 0 would cap a
    perfect classifier at (K - 1) / K there, while balanced accuracy and AUC, beside it, leave the class out.
    A class that is predicted but absent still counts, with F1 0.
    """
    present = np.union1d(labels, pred).astype(int).tolist()
    return float(skm.f1_score(labels, pred, labels=present, average="macro", zero_division=0))


def _balanced_accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    """scikit-learn's balanced accuracy, without its warning for a part of one class (a small validation part has
    one at every validation; the value, that class's recall, is right)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        return float(skm.balanced_accuracy_score(labels, pred))


def _auc(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """ROC AUC, defined whenever two classes are present: a small validation split often lacks one class, and a NaN
    there would hide the other classes' separability."""
    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    if k == 2:
        return float(skm.roc_auc_score(labels, probs[:, 1]))
    aucs = [skm.roc_auc_score(labels == c, probs[:, c]) for c in range(k) if c in present]
    return float(np.mean(aucs))


def chance_level(report: Mapping[str, Any], class_names: Sequence[str]) -> str | None:
    """Why a :func:`classification_report`'s predictions are no better than guessing, or None when they are.

    A model that gives every image one class, or swaps the classes, has a balanced accuracy of at most one over the
    number of classes present (what a constant guess scores), whatever its macro-F1 (a constant guess scores 1/3 on
    two images of two classes, above the 0 a publication check refuses).

    Args:
        report: a :func:`classification_report` (its ``confusion_matrix``, rows = truth, and ``balanced_accuracy``).
        class_names: the K names of its rows and columns.

    Returns:
        One line naming the balanced accuracy, the chance level and the classes predicted; None where fewer than two
        classes are present (chance is then 1: nothing to compare) or the balanced accuracy is above chance.
    """
    matrix = np.asarray(report["confusion_matrix"])
    present = int((matrix.sum(axis=1) > 0).sum())
    chance = 1.0 / max(present, 1)
    balanced = float(report["balanced_accuracy"])
    if present < 2 or balanced > chance + 1e-9:  # 1e-9: 1/3 summed from three recalls is not exactly 1/3
        return None
    predicted = [f"{name!r} {int(n)}" for name, n in zip(class_names, matrix.sum(axis=0)) if n]
    return (f"balanced accuracy {balanced:.3g} on {int(matrix.sum())} images of {present} classes, no better than "
            f"guessing ({chance:.3g}); predicted: {', '.join(predicted)}")


def require_finite_outputs(bad: int, total: int) -> None:
    """Stop a validation in which the network gave NaN or inf for ``bad`` of its ``total`` images (every rank's).

    Raises:
        ValueError: naming the usual cause and its remedy, on one line (what MONAI Label shows of a failed train).
    """
    if bad:
        raise ValueError(f"the network's outputs are not finite (NaN or inf) for {bad} of {total} images: "
                         "its weights have diverged (lower the learning rate) or an input holds NaN")


def log_odds(logits: torch.Tensor) -> torch.Tensor:
    """(N, K) logits -> (N, K) float64 log-odds of the softmax probabilities, ``log(p_c / (1 - p_c))``.

    The scores the metrics rank by. Probabilities round confident predictions together: a float32 softmax gives
    exactly 1.0 past a logit margin of ~17 (training without label smoothing, a confident error), a float64 one past
    ~37, and the AUC then counts a confident false positive as tied with the positives it ranks below (0.75 instead
    of 1.0 for margins 30, 25 against 20). The log-odds, ``z_c - logsumexp(z_j, j != c)``, are exact at any margin
    (for two classes, the logits' difference) and increase with ``p_c``, so the argmax and every ranking are the
    probabilities' own.

    Args:
        logits: (N, K) logits, on any device (the result is on the same one).

    Returns:
        (N, K) float64 log-odds.
    """
    z = logits.double()
    # the mask on the logits' device: masked_fill refuses a CPU mask for CUDA logits, which every GPU validation has
    diagonal = torch.eye(z.shape[1], dtype=torch.bool, device=z.device)
    others = z.unsqueeze(1).expand(-1, z.shape[1], -1).masked_fill(diagonal, -torch.inf)
    return z - torch.logsumexp(others, dim=2)  # others[n, c] is row n without class c


class _ProbabilityAccumulator(Metric):
    """Collects the log-odds of the class probabilities (:func:`log_odds`) and labels over an epoch, gathered across
    ranks at compute time."""

    def __init__(self, class_names: Sequence[str], output_transform: Any = lambda out: (out["pred"], out["label"]),
                 device: str | torch.device = "cpu") -> None:
        self.class_names = list(class_names)
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._log_odds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    @reinit__is_reduced
    def update(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        logits, labels = output
        # on the CPU, where they are kept: float64 is refused on an Apple GPU (--device mps), and the (N, K, K)
        # others of log_odds need no accelerator memory
        scores = log_odds(logits.detach().cpu())
        # a row without probabilities (a NaN or +inf logit, every logit -inf: the softmax is NaN) is marked NaN for
        # gathered()'s check; a single -inf logit is no fault (probability 0, the others' log-odds +inf at 1)
        undefined = torch.isnan(torch.softmax(logits.detach().cpu().double(), dim=1)).any(dim=1)
        self._log_odds.append(scores.masked_fill(undefined.unsqueeze(1), torch.nan))
        self._labels.append(torch.as_tensor(labels).detach().reshape(-1).long().cpu())

    def gathered(self) -> tuple[np.ndarray, np.ndarray]:
        """Every rank's log-odds (N, K) and labels (N,), concatenated in rank order.

        Ranks hold different numbers of images (the validation sampler does not pad, so no image is counted twice),
        and a rank may hold none: MONAI's ``evenly_divisible_all_gather`` pads each rank's rows to the longest, gathers
        and drops the padding again.
        """
        k = len(self.class_names)
        # an empty rank's rows in the other ranks' dtype: the gather pads and concatenates them together
        probs = torch.cat(self._log_odds) if self._log_odds else torch.zeros(0, k, dtype=torch.float64)
        labels = torch.cat(self._labels) if self._labels else torch.zeros(0, dtype=torch.long)
        if idist.get_world_size() > 1:
            # the backend's device, not ignite's idist.device(): that is the current GPU wherever CUDA exists, and
            # a --device cpu run under gloo on a GPU machine put every rank's gather on GPU 0
            device = collective_device(probs.device)
            probs = evenly_divisible_all_gather(probs.to(device), concat=True).cpu()
            labels = evenly_divisible_all_gather(labels.to(device), concat=True).cpu()
        # scikit-learn would stop the run with "Input contains NaN", which says nothing about the cause
        require_finite_outputs(int(torch.isnan(probs).any(dim=1).sum()), len(probs))
        # log-odds of -inf and +inf (probabilities 0 and 1 exactly) as the extreme finite numbers: scikit-learn
        # refuses infinite scores, and the ranking is the same
        extreme = torch.finfo(torch.float64)
        return probs.clamp(extreme.min, extreme.max).numpy(), labels.numpy()


class MacroF1(_ProbabilityAccumulator):
    """Macro-averaged F1 over the epoch (the key metric for model selection)."""

    def compute(self) -> float:
        probs, labels = self.gathered()
        return classification_report(probs, labels, self.class_names)["macro_f1"]


class ClassificationReport(_ProbabilityAccumulator):
    """The full report; ignite also stores its top-level entries (accuracy, auc, ...) as separate metrics."""

    def compute(self) -> dict[str, Any]:
        probs, labels = self.gathered()
        report = classification_report(probs, labels, self.class_names)
        report.pop("macro_f1")  # the key metric already has it; a second copy would clash in state.metrics
        return report

    def completed(self, engine: Any, name: str) -> None:
        """Store the scalars (n, accuracy, balanced_accuracy, auc) in ``state.metrics`` and the whole report in
        ``state.metric_details[name]``.

        ignite's default would put the report and its tables (per_class, confusion_matrix, roc) in
        ``state.metrics``, which MONAI's handlers log as numbers: MONAI's stock MLflow handler then fails on the
        confusion matrix. ``metric_details`` is where MONAI engines keep non-scalar metric results.
        """
        report = self.compute()
        if getattr(engine.state, "metric_details", None) is None:
            engine.state.metric_details = {}
        engine.state.metric_details[name] = report
        for key, value in report.items():
            if isinstance(value, (int, float)):
                engine.state.metrics[key] = value


class ImageMeanLoss(Metric):
    """Mean over images of a per-batch mean loss, summed over every rank's images.

    Expects ``(batch mean loss, number of images in the batch)`` per update; the result is the mean over images
    whatever the batching and however the images are split over ranks (ignite's ``Average`` averages batches, so
    its value changes when a shard ends in a short batch). One all-reduce of (sum, count) at compute time.
    """

    def __init__(self, output_transform: Any = lambda out: (out["loss"], out["count"]),
                 device: str | torch.device = "cpu") -> None:
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = torch.zeros((), dtype=torch.float64, device=self._device)
        self._count = torch.zeros((), dtype=torch.float64, device=self._device)

    @reinit__is_reduced
    def update(self, output: tuple[torch.Tensor, int]) -> None:
        loss, count = output
        self._sum += torch.as_tensor(loss).detach().double().to(self._device) * int(count)
        self._count += int(count)

    @sync_all_reduce("_sum", "_count")
    def compute(self) -> float:
        if self._count.item() == 0:
            raise NotComputableError("ImageMeanLoss needs at least one image before it can be computed")
        return float(self._sum / self._count)


class ImageCount(Metric):
    """How many images were evaluated, over every rank (the ``n`` of a validation)."""

    def __init__(self, output_transform: Any = lambda out: out["count"], device: str | torch.device = "cpu") -> None:
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._count = torch.zeros((), dtype=torch.int64, device=self._device)

    @reinit__is_reduced
    def update(self, output: int) -> None:
        self._count += int(output)

    @sync_all_reduce("_count")
    def compute(self) -> int:
        return int(self._count.item())
