"""Frozen-feature evaluation of an encoder: a tuned logistic-regression probe and a cosine kNN classifier.

The protocols follow the published ones:

* linear probe (CLIP, Radford et al. 2021): features extracted once with the encoder in eval mode (no drop path, no
  augmentation), standardised, then scikit-learn's L-BFGS ``LogisticRegression``; the L2 strength ``C`` is chosen
  by a sweep on the validation split, then the probe is refit on train + validation;
* kNN (DINO, Caron et al. 2021): cosine similarity of L2-normalised features, votes weighted by
  ``exp(similarity / 0.07)``; ``k`` is chosen on the validation split.

A gradient-descent probe on a few dozen images is at the mercy of its lr, epochs and BatchNorm statistics (it can
collapse to one class); the closed-form-quality L-BFGS fit removes that variable, so the numbers describe the encoder.
The fitted probe is exported into the classifier's ``BatchNorm1d(affine=False) + Linear`` head
(:func:`export_to_head`), so a probed checkpoint is an ordinary classifier for evaluation, inference and export.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler
from torch import nn

from monai_ext.data.datalists import class_index_of
from monai_ext.engines.metrics import classification_report
from monai_ext.io.json_values import json_number
from monai_ext.io.settings import is_unset, number_list_setting

logger = logging.getLogger(__name__)

#: CLIP sweeps C over 1e-6 .. 1e6; on a few hundred images the useful range is narrower, half-decade steps suffice.
DEFAULT_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-5, 3, 17))
DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10, 20, 50)
KNN_TEMPERATURE = 0.07
SPLITS = ("train", "validation", "test")


# ------------------------------------------------------------------------------------------------ features
def encoder_features(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Pooled encoder features of a classifier or an MAE.

    A classifier gives its ``forward_features`` (the features its head sees). An MAE gives the mean of its
    normalised patch tokens with no masking (``mask_ratio`` 0), the pooling MAE fine-tunes with.

    Args:
        network: a :class:`~monai_ext.networks.classifier.ViTClassifier`, an MAE, or a wrapped one (DDP).
        images: (N, C, H, W).

    Returns:
        (N, D) features.
    """
    model = getattr(network, "module", network)
    if hasattr(model, "forward_features"):
        return model.forward_features(images)
    if hasattr(model, "forward_encoder"):
        latent, _, _ = model.forward_encoder(images, 0.0)
        return latent[:, 1:, :].mean(dim=1)
    raise ValueError(f"{type(model).__name__} has neither forward_features nor forward_encoder")


def extract_features(
    network: nn.Module, batches: Iterable[Mapping[str, Any]], device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Features of every batch, computed once with the network in eval mode (train mode restored afterwards).

    Args:
        network: see :func:`encoder_features`.
        batches: dicts with ``image`` (N, C, H, W) and ``label`` (N,), e.g. a DataLoader without augmentation.
        device: where the network runs.

    Returns:
        features (M, D) float32 and labels (M,) int64, M = all images.
    """
    was_training = network.training
    network.eval()
    feats, labels = [], []
    try:
        with torch.no_grad():
            for batch in batches:
                images = torch.as_tensor(batch["image"]).to(device)
                feats.append(encoder_features(network, images).float().cpu())
                labels.append(torch.as_tensor(batch["label"]).reshape(-1).long())
    finally:
        network.train(was_training)
    if not feats:
        raise ValueError("no batches to extract features from")
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


# ------------------------------------------------------------------------------------------------ linear probe
@dataclass
class LinearProbe:
    """A fitted probe: standardisation and multinomial logistic regression.

    Attributes:
        mean, scale: (D,) standardisation of the features.
        coef: (K, D) weights on standardised features (K = 1 for two classes, as scikit-learn stores it).
        intercept: (K,) biases.
        num_classes: classes of the task.
        c: the chosen inverse L2 strength.
        sweep: per C, the validation macro-F1 and log loss.
        train_only: of a probe refit on train + validation (:func:`refit_probe`), the probe before the refit, fit
            on the training part only: the one that scored validation (None for a probe that was not refit).
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    num_classes: int
    c: float
    sweep: list[dict[str, float]] = field(default_factory=list)
    train_only: LinearProbe | None = None

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N, K) logits (two columns for a binary task)."""
        z = (features - self.mean) / self.scale @ self.coef.T + self.intercept
        return np.concatenate([-z / 2, z / 2], axis=1) if self.num_classes == 2 else z

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N, K) softmax probabilities."""
        z = self.logits(features)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def _check_pair(features: np.ndarray, labels: np.ndarray, name: str) -> None:
    if features.ndim != 2 or len(features) != len(labels) or len(labels) == 0:
        raise ValueError(f"{name}: need (N, D) features and N labels with N > 0, got {features.shape!r} and "
                         f"{np.shape(labels)!r}")
    _check_finite(features, name)


def _check_finite(features: np.ndarray, name: str) -> None:
    """Refuse NaN or infinite features, naming the split: a diverged encoder's NaN would otherwise turn into NaN
    probabilities (kNN) or scikit-learn's message about its own input, far from the split that holds them."""
    finite = np.isfinite(np.asarray(features, dtype=np.float64)).all(axis=tuple(range(1, np.ndim(features))))
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise ValueError(f"{name}: features must be finite, got NaN or infinite values in {len(rows)} of "
                         f"{len(finite)} rows (first rows {rows[:5].tolist()!r}); the encoder's outputs diverged or "
                         "overflowed")


def _fit(features: np.ndarray, labels: np.ndarray, c: float, class_weight: ClassWeight, seed: int,
         part: str = "the training part") -> tuple[StandardScaler, LogisticRegression]:
    """Standardise and fit one logistic regression; ``part`` names the data in an error (the training part, or train
    + validation of a refit)."""
    scaler = StandardScaler().fit(features)
    if isinstance(class_weight, Mapping):  # scikit-learn refuses keys of classes this fit lacks (a fold's rare class)
        given = class_weight
        class_weight = {int(c): given.get(int(c), 1.0) for c in np.unique(labels)}
        # probe_class_weight lets {0: 0, 1: 0} through for 3 classes (class 2 weighs 1); a part without class 2 then
        # has no sample that weighs anything, and scikit-learn stops on a bare ZeroDivisionError
        if not any(class_weight.values()):
            raise ValueError(f"probe#class_weight {given!r} weighs every class of {part} 0 (its classes: "
                             f"{sorted(class_weight)!r}): no sample would count in the fit; give one of them a "
                             "weight above 0")
    model = LogisticRegression(C=c, max_iter=2000, class_weight=class_weight, random_state=seed)
    with warnings.catch_warnings():
        # Very weak regularisation on separable data stops at max_iter; such a C then loses on validation anyway.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(features), labels)
    return scaler, model


def _as_probe(scaler: StandardScaler, model: LogisticRegression, num_classes: int, c: float) -> LinearProbe:
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) != num_classes:  # a class absent from training: give it logits that never win
        full_coef = np.zeros((num_classes, coef.shape[1]))
        full_intercept = np.full(num_classes, -1e4)
        if len(model.classes_) == 2:
            coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
        full_coef[model.classes_], full_intercept[model.classes_] = coef, intercept
        coef, intercept = full_coef, full_intercept
    return LinearProbe(scaler.mean_.copy(), scaler.scale_.copy(), np.asarray(coef, np.float64),
                       np.asarray(intercept, np.float64), num_classes, float(c))


ClassWeight = str | dict[int, float] | None


def probe_class_weight(value: Any, class_names: Sequence[str] | None = None,
                       num_classes: int | None = None) -> ClassWeight:
    """The probe's class weighting (``probe#class_weight``) from YAML or the command line, checked before any
    feature is extracted: ``"balanced"``, None, or ``{class: weight}`` as scikit-learn takes it.

    ``--probe#class_weight null`` on a ``monai.bundle`` command line arrives as the text ``'null'``; ``null`` and
    ``none`` (any case) mean None here. In the dict form a class is its index 0..K-1 (``0`` or ``"0"``: YAML and a
    command line may give it as text) or its name in ``class_names``; a class left out weighs 1, as in scikit-learn.
    Weights are finite and >= 0, and not 0 for every class (every sample would weigh nothing).

    Args:
        value: the setting as given.
        class_names: the K class names, when known (names are then accepted as keys, and indices checked below K).
        num_classes: K, when the names are not known.

    Returns:
        ``"balanced"``, None, or ``{class index: weight}``.

    Raises:
        ValueError: anything else, quoting it and saying what is wrong.
    """
    if is_unset(value):
        return None
    if isinstance(value, str) and value.strip().lower() == "balanced":
        return "balanced"
    names = list(class_names) if class_names is not None else None
    count = len(names) if names is not None else num_classes
    if not isinstance(value, Mapping):
        raise _class_weight_error(value, "not 'balanced', null or a dict")
    if not value:
        raise _class_weight_error(value, "the dict is empty")
    weights: dict[int, float] = {}
    for key, weight in value.items():
        index, number = class_index_of(key, names, count), _weight(weight)
        if index is None:
            raise _class_weight_error(value, f"{key!r} is not a class index{f' 0..{count - 1}' if count else ''}"
                                             + (f" or a class name in {names}" if names else ""))
        if index in weights:
            raise _class_weight_error(value, f"class {index} is given twice")
        if number is None:
            raise _class_weight_error(value, f"the weight of {key!r} must be a finite number >= 0, got {weight!r}")
        weights[index] = number
    if not any(weights.values()) and len(weights) == count:  # a class left out weighs 1
        raise _class_weight_error(value, "every class weighs 0")
    return weights


def _class_weight_error(value: Any, reason: str) -> ValueError:
    return ValueError(f"probe#class_weight must be 'balanced', null (none) or {{class index or name: weight}}, got "
                      f"{value!r}: {reason}")


def _weight(weight: Any) -> float | None:
    """A class weight as a finite float >= 0 (a number or its text), else None."""
    if isinstance(weight, bool):
        return None
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        return None
    return weight if np.isfinite(weight) and weight >= 0 else None


def fit_linear_probe(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    cs: Sequence[float] = DEFAULT_CS,
    class_weight: str | None = "balanced",
    refit: bool = True,
    seed: int = 0,
) -> LinearProbe:
    """CLIP's linear-probe protocol: sweep C on validation, then refit on train + validation with the best C.

    The best C has the highest validation macro-F1; ties (frequent on a few dozen validation images) go to the
    lower validation log loss, then to the stronger regularisation.

    Args:
        train, validation: (features (N, D), integer labels (N,)).
        num_classes: K.
        cs: candidate inverse L2 strengths.
        class_weight: ``"balanced"`` (inverse class frequency, for imbalanced sets), None, or ``{class index:
            weight}`` (:func:`probe_class_weight`).
        refit: refit on train + validation after choosing C (CLIP); else keep the train-only fit.
        seed: for scikit-learn's solver.

    Returns:
        The fitted :class:`LinearProbe`, its ``sweep`` holding the validation figures of every C.
    """
    _check_pair(*train, "train")
    _check_pair(*validation, "validation")
    class_weight = probe_class_weight(class_weight, num_classes=num_classes)
    if not cs or any(c <= 0 for c in cs):
        raise ValueError(f"cs must be positive inverse regularisation strengths, got {cs!r}")
    low = int(min(train[1].min(), validation[1].min()))
    high = int(max(train[1].max(), validation[1].max()))
    if num_classes < 2 or low < 0 or high >= num_classes:
        raise ValueError(f"labels must lie in [0, num_classes) with num_classes >= 2, got num_classes "
                         f"{num_classes!r} and labels from {low} to {high}")
    if len(np.unique(train[1])) < 2:
        raise ValueError(f"the training part has one class only ({np.unique(train[1])!r}); a probe needs two")
    names = [str(i) for i in range(num_classes)]
    sweep, best = [], None
    for c in sorted(cs):
        scaler, model = _fit(*train, c, class_weight, seed)
        probe = _as_probe(scaler, model, num_classes, c)
        probs = probe.probabilities(validation[0])
        f1 = classification_report(probs, validation[1], names)["macro_f1"]
        loss = float(log_loss(validation[1], np.clip(probs, 1e-12, 1), labels=list(range(num_classes))))
        sweep.append({"C": float(c), "val_macro_f1": f1, "val_log_loss": loss})
        if best is None or (f1, -loss) > (best[1], -best[2]):
            best = (probe, f1, loss)
    probe = best[0]
    probe.sweep = sweep
    logger.info("linear probe: C=%g (validation macro-F1 %.4f)", probe.c, best[1])
    if refit:
        both = (np.concatenate([train[0], validation[0]]), np.concatenate([train[1], validation[1]]))
        probe = refit_probe(probe, both, class_weight, seed)
    return probe


def refit_probe(probe: LinearProbe, data: tuple[np.ndarray, np.ndarray], class_weight: str | None = "balanced",
                seed: int = 0) -> LinearProbe:
    """The same C fitted again on ``data`` (features (N, D), labels (N,)), e.g. train + validation."""
    _check_pair(*data, "refit data")
    refit = _as_probe(*_fit(*data, probe.c, class_weight, seed, "the refit data"), probe.num_classes, probe.c)
    refit.sweep, refit.train_only = probe.sweep, probe
    return refit


def export_to_head(probe: LinearProbe, head: nn.Module) -> None:
    """Write a probe into a ``Sequential(BatchNorm1d(affine=False), Linear)`` head (the classifier's probe head).

    In eval mode the BatchNorm computes ``(x - running_mean) / sqrt(running_var + eps)``: with ``running_var = 1 -
    eps`` it only centres, and the Linear layer holds the logistic regression with the probe's scale folded into its
    weights (``coef / scale``). Keeping the scale in ``running_var`` (``scale**2 - eps``) would be wrong for a feature
    whose spread is under ``sqrt(eps)``: the variance cannot go below zero, so the head would divide by ``sqrt(eps)``.
    """
    if not (isinstance(head, nn.Sequential) and isinstance(head[0], nn.BatchNorm1d) and isinstance(head[-1], nn.Linear)):
        raise TypeError(f"expected a BatchNorm1d + Linear probe head (linear_probe=True), got {head!r}")
    norm, linear = head[0], head[-1]
    logit_weight, logit_bias = _logit_layer(probe)
    if tuple(linear.weight.shape) != logit_weight.shape:
        raise ValueError(f"head weight shape {tuple(linear.weight.shape)!r} differs from the probe's {logit_weight.shape!r}")
    with torch.no_grad():
        norm.running_mean.copy_(torch.from_numpy(probe.mean))
        norm.running_var.fill_(1.0 - norm.eps)
        linear.weight.copy_(torch.from_numpy(logit_weight / probe.scale))
        linear.bias.copy_(torch.from_numpy(logit_bias))


def _logit_layer(probe: LinearProbe) -> tuple[np.ndarray, np.ndarray]:
    """(K, D) weights and (K,) biases whose softmax equals the probe's probabilities."""
    if probe.num_classes == 2 and probe.coef.shape[0] == 1:
        return np.concatenate([-probe.coef / 2, probe.coef / 2]), np.concatenate([-probe.intercept / 2, probe.intercept / 2])
    return probe.coef, probe.intercept


# ------------------------------------------------------------------------------------------------ kNN
def knn_probabilities(
    bank: tuple[np.ndarray, np.ndarray], queries: np.ndarray, k: int, num_classes: int,
    temperature: float = KNN_TEMPERATURE,
) -> np.ndarray:
    """DINO's weighted kNN: class scores from the ``k`` most cosine-similar bank items, each voting exp(sim / T).

    Args:
        bank: (features (M, D), labels (M,)) of the labelled memory.
        queries: (N, D) features.
        k: neighbours (capped at M).
        num_classes: K.
        temperature: T of the vote weights.

    Returns:
        (N, K) class probabilities (normalised votes), float64.

    Raises:
        ValueError: ``k`` below 1, or NaN or infinite features in the bank or the queries.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k!r}")
    bank_x, query_x = _unit_rows(bank[0], "kNN memory (bank)"), _unit_rows(queries, "kNN queries")
    sims, idx = (query_x @ bank_x.T).topk(min(k, len(bank_x)), dim=1)
    votes = torch.zeros(len(query_x), num_classes, dtype=sims.dtype)
    labels = torch.as_tensor(bank[1], dtype=torch.long)[idx]
    votes.scatter_add_(1, labels, (sims / temperature).exp())
    return (votes / votes.sum(dim=1, keepdim=True)).numpy()


def _unit_rows(features: np.ndarray, name: str) -> torch.Tensor:
    """(N, D) features scaled to unit L2 norm in float64 (a zero row stays zero: similarity 0 to every row).

    Each row is first divided by its largest magnitude: the squares in a float32 norm overflow past ~1.8e19, which
    turned every row into zeros (kNN fell to chance without a word) and float32 cannot hold features past ~3.4e38
    (NaN probabilities); divided so, the squares stay at most D whatever the scale, and cosine similarity does not
    depend on it.
    """
    _check_finite(features, name)
    x = np.asarray(features, dtype=np.float64)
    peak = np.abs(x).max(axis=1, keepdims=True) if x.size else np.ones((len(x), 1))
    x = x / np.where(peak > 0, peak, 1.0)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return torch.from_numpy(x / np.where(norm > 0, norm, 1.0))


def choose_knn_k(
    train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray], num_classes: int,
    ks: Sequence[int] = DEFAULT_KS,
) -> tuple[int, list[dict[str, float]]]:
    """The k (among ``ks`` up to the bank size) with the best validation macro-F1, ties to the higher AUC, then
    the larger k (smoother). Returns (k, per-k validation figures)."""
    _check_pair(*train, "train")
    _check_pair(*validation, "validation")
    names = [str(i) for i in range(num_classes)]
    candidates = sorted({min(int(k), len(train[1])) for k in ks})
    sweep, best = [], None
    for k in candidates:
        report = classification_report(knn_probabilities(train, validation[0], k, num_classes), validation[1], names)
        auc = report["auc"] if np.isfinite(report["auc"]) else 0.0
        sweep.append({"k": k, "val_macro_f1": report["macro_f1"], "val_auc": report["auc"]})
        if best is None or (report["macro_f1"], auc, k) > best[1:]:
            best = (k, report["macro_f1"], auc, k)
    return best[0], sweep


# ------------------------------------------------------------------------------------------------ both at once
def evaluate_frozen_features(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str], cs: Sequence[float] = DEFAULT_CS,
    ks: Sequence[int] = DEFAULT_KS, class_weight: str | None = "balanced", seed: int = 0,
) -> tuple[LinearProbe, dict[str, Any]]:
    """Tuned linear probe and tuned kNN on precomputed features, scored on every split other than ``train``.

    Args:
        splits: ``train`` and ``validation`` (required) and optionally ``test``: (features (N, D), labels (N,)).
        class_names: K names.
        cs, ks: the sweeps.
        class_weight: of the logistic regression.
        seed: solver seed.

    Returns:
        (the refit probe, a JSON-ready record: chosen ``C`` and ``k``, both sweeps, and per scored split the full
        classification reports ``linear_<split>`` and ``knn_<split>``). Validation is scored with the train-only
        probe and kNN memory (the figures C and k were chosen on, so optimistic); the test split with the probe
        refit on train + validation and with train + validation as the kNN memory.
    """
    k_classes = len(class_names)
    train, validation = splits["train"], splits["validation"]
    for name, (x, y) in splits.items():  # the test split too: it is only scored, never fitted, so checked here
        if len(y):
            _check_pair(x, y, name)
    class_weight = probe_class_weight(class_weight, class_names)  # cleaned once: the refit below receives it too
    train_only = fit_linear_probe(train, validation, k_classes, cs, class_weight, refit=False, seed=seed)
    k, knn_sweep = choose_knn_k(train, validation, k_classes, ks)
    both = (np.concatenate([train[0], validation[0]]), np.concatenate([train[1], validation[1]]))
    probe = refit_probe(train_only, both, class_weight, seed)
    record: dict[str, Any] = {"C": probe.c, "k": k, "linear_sweep": probe.sweep, "knn_sweep": knn_sweep,
                              "feature_dim": int(train[0].shape[1]), "n_train": len(train[1]),
                              "n_validation": len(validation[1])}
    for name, (x, y) in splits.items():
        if name == "train" or len(y) == 0:
            continue
        bank, fitted = (train, train_only) if name == "validation" else (both, probe)
        record[f"knn_{name}"] = classification_report(knn_probabilities(bank, x, k, k_classes), y, class_names)
        record[f"linear_{name}"] = classification_report(fitted.probabilities(x), y, class_names)
    return probe, record


# ------------------------------------------------------------------------------------------------ bundle runner
def _json_safe(value: Any) -> Any:
    """NaN (an AUC with one class present) -> None, so the report is strict JSON."""
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


class FrozenFeatureProbe:
    """The classification bundle's ``linear_probe`` run: extract, fit, export, save.

    Features of the train, validation and (when present) test datalists are extracted once through ``transform``
    (loading and normalisation, no augmentation) with the network in eval mode; :func:`evaluate_frozen_features`
    tunes the probe and kNN; the refit probe is written into the network's probe head and the network saved to
    ``save_path`` in the bundle's checkpoint format, so ``evaluate.yaml`` and inference read it like any other. The
    checkpoint also keeps, under ``validation_head``, the head of the probe fit on the training part only, which
    scored validation (its ``val_macro_f1``): the saved head was refit on validation too, so evaluating the
    validation part loads this one instead (:func:`~monai_ext.apps.bundle_support.use_validation_probe`).
    ``<output_dir>/probe_report.json`` holds C, k, both sweeps and the kNN and probe reports per split, and under
    ``skipped`` each split's unreadable files with their reason (left out of the fit and the scores, not replaced).

    Args:
        network: a classifier built with ``linear_probe=True``, encoder weights already loaded.
        datalists: ``train``, ``validation`` and optionally ``test`` lists of ``{"image", "label"}`` dicts (other
            keys, such as a datalist file's ``class_names``, are ignored).
        transform: the bundle's evaluation preprocessing.
        class_names: K names.
        save_path: checkpoint to write (``models/model.pt``).
        record: the bundle's model record (its ``state_dict()`` is the architecture record).
        output_dir: where ``probe_report.json`` goes.
        device: where the encoder runs.
        batch_size, num_workers: of the extraction loader.
        cs, ks, class_weight, seed: see :func:`evaluate_frozen_features`.
        handlers: told of the fit once its files are written, through their ``probe_completed(report)``: the
            bundle's MLflow tracking logs the run there (an engine's handlers are attached to its events, and a
            probe runs no engine). None entries (a handler disabled on this rank) are passed over.
    """

    def __init__(
        self, network: nn.Module, datalists: Mapping[str, Sequence[Mapping[str, Any]]], transform: Any,
        class_names: Sequence[str], save_path: str, record: Any, output_dir: str, device: torch.device | str = "cpu",
        batch_size: int = 32, num_workers: int = 0, cs: Sequence[float] | None = None, ks: Sequence[int] | None = None,
        class_weight: str | None = "balanced", seed: int = 0, handlers: Sequence[Any] | None = None,
    ) -> None:
        for name in ("train", "validation"):
            if not datalists.get(name):
                raise ValueError(f"the linear probe needs a non-empty {name!r} datalist")
        self.network, self.datalists, self.transform = network, datalists, transform
        self.class_names, self.save_path, self.record, self.output_dir = list(class_names), save_path, record, output_dir
        self.device, self.batch_size, self.num_workers = device, batch_size, num_workers
        # --probe#cs 0.1 arrives as a float and --probe#cs null as text: one number is a one-value sweep
        self.cs = number_list_setting(cs, "probe#cs", float, "a positive number or a list of them") or DEFAULT_CS
        self.ks = number_list_setting(ks, "probe#ks", int, "a whole number >= 1 or a list of them") or DEFAULT_KS
        if min(self.cs) <= 0:
            raise ValueError(f"probe#cs must be a positive number or a list of them, got {cs!r}")
        if min(self.ks) < 1:
            raise ValueError(f"probe#ks must be a whole number >= 1 or a list of them, got {ks!r}")
        # before any feature is extracted: a bad weight would otherwise stop scikit-learn's fit minutes later
        self.class_weight, self.seed = probe_class_weight(class_weight, class_names), seed
        self.report: dict[str, Any] = {}
        self.handlers = [handler for handler in handlers or [] if handler is not None]

    def features(self, datalist: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
        """(N, D) features and (N,) labels of the N readable items of one datalist, and the unreadable ones left out
        (``[{"image", "reason"}]``): a substitute image would enter the fit or the scores twice."""
        from monai.data import DataLoader

        from monai_ext.data.datasets import SkipCorruptDataset

        dataset = SkipCorruptDataset(list(datalist), self.transform, evaluation=True)
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
        features, labels = extract_features(self.network, loader, self.device)
        return features, labels, dataset.skipped

    def run(self) -> dict[str, Any]:
        """Fit and save (main process only). Returns the report."""
        from monai_ext.engines.distributed import is_main_process
        from monai_ext.io.atomic import atomic_torch_save, atomic_write_text

        if not is_main_process():
            return {}
        splits, skipped = {}, {}
        for name in SPLITS:
            if self.datalists.get(name):
                features, labels, skipped[name] = self.features(self.datalists[name])
                splits[name] = (features, labels)
        probe, report = evaluate_frozen_features(splits, self.class_names, self.cs, self.ks, self.class_weight,
                                                 self.seed)
        report["skipped"] = skipped
        model = getattr(self.network, "module", self.network)
        export_to_head(probe, model.head)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        # the head that scored validation (val_macro_f1): the saved one was refit on those images and would score
        # them near perfectly, so evaluating the validation part needs this one to reproduce the recorded figures
        validation_head = copy.deepcopy(model.head)
        export_to_head(probe.train_only, validation_head)
        val_state = {k: v.detach().cpu() for k, v in validation_head.state_dict().items()}
        val_f1 = report["linear_validation"]["macro_f1"]
        atomic_torch_save({"model": state, "arch": self.record.state_dict(), "val_macro_f1": val_f1,
                           "validation_head": val_state}, self.save_path)
        self.report = _json_safe(report)
        atomic_write_text(f"{self.output_dir}/probe_report.json", json.dumps(self.report, indent=1))
        logger.info("probe saved to %s: C=%g, k=%d, validation macro-F1 probe %.4f, kNN %.4f", self.save_path,
                    probe.c, report["k"], val_f1, report["knn_validation"]["macro_f1"])
        for handler in self.handlers:
            handler.probe_completed(self.report)
        return self.report

    def summary(self) -> str:
        """One line for the bundle's finalize step."""
        if not self.report:
            return "linear probe: nothing fitted on this process"
        r = self.report
        return (f"linear probe C={r['C']:g}: validation macro-F1 {r['linear_validation']['macro_f1']:.4f}; "
                f"kNN k={r['k']}: {r['knn_validation']['macro_f1']:.4f} | report: {self.output_dir}/probe_report.json "
                f"| model: {self.save_path}")
