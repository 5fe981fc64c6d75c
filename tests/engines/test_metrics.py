"""classification_report, MacroF1 and ClassificationReport against scikit-learn's metrics computed independently;
chance_level, the publication check of a fine-tuned classifier."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from sklearn import metrics as skm

from monai_ext.engines.metrics import ClassificationReport, MacroF1, chance_level, classification_report


def scored_sample(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (N, K), softmax probabilities (N, K), labels (N,)) with every class present and errors made."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]  # informative but imperfect
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return logits.astype(np.float32), probs, labels


def sklearn_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    if probs.shape[1] == 2:
        return skm.roc_auc_score(labels, probs[:, 1])
    return skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro")


@pytest.mark.parametrize("n, k, seed", [(37, 2, 0), (50, 3, 1), (101, 4, 2), (9, 5, 3)])
def test_report_equals_sklearn(n: int, k: int, seed: int) -> None:
    _, probs, labels = scored_sample(n, k, seed)
    names = [f"class{c}" for c in range(k)]
    report = classification_report(probs, labels, names)
    pred = probs.argmax(axis=1)
    assert report["n"] == n
    assert report["macro_f1"] == pytest.approx(skm.f1_score(labels, pred, average="macro"))
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert report["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, pred))
    assert report["auc"] == pytest.approx(sklearn_auc(probs, labels))
    matrix = skm.confusion_matrix(labels, pred)
    assert report["confusion_matrix"] == matrix.tolist()
    for c, name in enumerate(names):  # per-class figures from the confusion matrix, by hand; NaN where undefined
        tp, predicted, actual = matrix[c, c], matrix[:, c].sum(), matrix[c].sum()
        precision = tp / predicted if predicted else np.nan
        recall = tp / actual if actual else np.nan
        f1 = 2 * tp / (predicted + actual) if predicted + actual else np.nan
        assert report["per_class"][name] == pytest.approx({"precision": precision, "recall": recall, "f1": f1,
                                                            "support": actual}, nan_ok=True)
        fpr, tpr, _ = skm.roc_curve(labels == c, probs[:, c])
        assert report["roc"][name] == {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    assert 0.2 < report["macro_f1"] < 1.0  # neither trivial nor perfect, so the comparisons mean something


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("labels, pred, expected", [
    ([0, 0, 1, 1], [0, 0, 1, 1], 1.0),  # class 2 neither true nor predicted: perfect, not 2/3
    ([0, 0, 1, 1], [0, 2, 1, 1], (2 / 3 + 1 + 0) / 3),  # class 2 predicted but absent: it counts, with F1 0
    ([0, 1, 2, 2], [0, 1, 2, 1], (1 + 2 / 3 + 2 / 3) / 3),
])
def test_macro_f1_averages_over_the_classes_true_or_predicted(labels, pred, expected) -> None:
    # a small test fold often lacks a rare class: balanced accuracy and AUC leave it out, so must macro-F1
    probs = np.eye(3)[pred] * 0.7 + 0.1
    report = classification_report(probs, np.array(labels), ["a", "b", "c"])
    assert report["macro_f1"] == pytest.approx(expected)
    assert report["macro_f1"] == pytest.approx(skm.f1_score(labels, pred, average="macro"))  # scikit-learn's default
    assert set(report["per_class"]) == {"a", "b", "c"}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_a_class_absent_from_the_truth_has_no_recall_and_a_class_never_predicted_no_precision() -> None:
    """A test part without a malignant case reported malignant recall 0.0, read as every cancer missed."""
    probs = np.eye(3)[[0, 0, 0, 2]] * 0.7 + 0.1  # truth: a, a, a, b; predicted: a, a, a, c
    report = classification_report(probs, np.array([0, 0, 0, 1]), ["a", "b", "c"])
    assert report["per_class"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}
    b, c = report["per_class"]["b"], report["per_class"]["c"]
    assert np.isnan(b["precision"]) and b["recall"] == 0.0 and b["f1"] == 0.0  # present, never predicted
    assert c["precision"] == 0.0 and np.isnan(c["recall"]) and c["f1"] == 0.0  # absent, predicted once
    empty = classification_report(np.eye(3)[[0, 0]] * 0.7 + 0.1, np.array([0, 0]), ["a", "b", "c"])
    assert all(np.isnan(v) for v in list(empty["per_class"]["b"].values())[:3])  # absent and never predicted


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_one_class_only_has_no_auc_and_no_roc() -> None:
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.9, 0.1]])
    report = classification_report(probs, np.zeros(3, dtype=int), ["a", "b"])
    assert np.isnan(report["auc"]) and report["roc"] == {}
    assert report["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("k, present", [(3, [0, 1]), (4, [1, 3]), (4, [0, 2, 3])])
def test_auc_with_a_class_missing_from_the_truth_averages_the_present_classes_one_vs_rest(k, present) -> None:
    """A small validation split without a rare class has an AUC of the classes it holds (each one against the
    rest); scikit-learn's multi-class AUC refuses such labels, and an absent class's AUC is undefined."""
    _, probs, _ = scored_sample(40, k, seed=5)
    rng = np.random.default_rng(6)
    labels = np.array(present * 2 + rng.choice(present, 40 - 2 * len(present)).tolist())
    probs = probs + 0.2 * np.eye(k)[labels]  # informative but imperfect
    probs /= probs.sum(axis=1, keepdims=True)
    expected = [skm.roc_auc_score(labels == c, probs[:, c]) for c in present]
    assert len(set(np.round(expected, 6))) == len(present)  # the classes differ, so the average means something
    report = classification_report(probs, labels, [f"class{c}" for c in range(k)])
    assert report["auc"] == pytest.approx(np.mean(expected))
    assert sorted(report["roc"]) == [f"class{c}" for c in present]


def test_probabilities_of_the_wrong_width_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        classification_report(np.full((4, 2), 0.5), np.zeros(4, dtype=int), ["a", "b", "c"])


@pytest.mark.parametrize("batch_size", [4, 7, 50])
def test_epoch_metrics_over_uneven_batches_equal_sklearn_on_the_whole_epoch(batch_size: int) -> None:
    logits, probs, labels = scored_sample(50, 3, 4)
    batches = [{"pred": torch.from_numpy(logits[i:i + batch_size]), "label": torch.from_numpy(labels[i:i + batch_size])}
               for i in range(0, len(labels), batch_size)]
    names = ["a", "b", "c"]
    engine = Engine(lambda _engine, batch: batch)
    MacroF1(names).attach(engine, "macro_f1")
    report = ClassificationReport(names)
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: report.update((e.state.output["pred"],
                                                                             e.state.output["label"])))
    engine.run(batches, max_epochs=1)
    pred = probs.argmax(axis=1)
    assert engine.state.metrics["macro_f1"] == pytest.approx(skm.f1_score(labels, pred, average="macro"))
    computed = report.compute()
    assert computed["n"] == 50
    assert computed["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert computed["auc"] == pytest.approx(sklearn_auc(probs, labels), rel=1e-6)
    assert computed["confusion_matrix"] == skm.confusion_matrix(labels, pred).tolist()


@pytest.mark.parametrize("labels, message", [
    ([], "the evaluated part is empty"),
    ([1, 2, 1, 2], r"class indices in \[0, 2\) .* from 1 to 2"),
])
def test_an_empty_part_or_labels_outside_the_classes_are_refused_in_words(labels, message) -> None:
    from monai_ext.engines.metrics import classification_report

    probs = np.full((len(labels), 2), 0.5)
    with pytest.raises(ValueError, match=message):
        classification_report(probs, np.array(labels, dtype=int), ["benign", "malignant"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_outputs_are_refused_saying_the_network_diverged(bad: float) -> None:
    # scikit-learn's own "Input contains NaN" once ended the run with nothing about the cause
    logits, _, labels = scored_sample(9, 3, 5)
    logits[4, 1] = bad
    metric = MacroF1(["a", "b", "c"])
    metric.update((torch.from_numpy(logits), torch.from_numpy(labels)))
    with pytest.raises(ValueError, match=r"not finite \(NaN or inf\) for 1 of 9 images: its weights have diverged"):
        metric.compute()


def test_a_part_of_one_class_reports_its_balanced_accuracy_without_a_warning() -> None:
    """scikit-learn warned at every validation of a small part holding one class; the value is that class's recall."""
    import warnings

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = classification_report(probs, np.array([0, 0, 0]), ["a", "b"])
    assert report["balanced_accuracy"] == pytest.approx(2 / 3)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("labels, missing", [([0, 0, 0], ["b", "c"]), ([0, 2, 2], ["b"]), ([1, 1, 1], ["a", "c"]),
                                             ([0, 1, 2], [])])
def test_the_report_lists_the_classes_without_images(labels, missing) -> None:
    """A benign-only test part reported a malignant support of 0 among the numbers, with nothing saying so."""
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    report = classification_report(probs, np.array(labels), ["a", "b", "c"])
    assert report["classes_without_images"] == missing


def one_hot(pred: list[int], k: int) -> np.ndarray:
    return np.eye(k)[pred] * 0.8 + 0.2 / k  # rows sum to 1, argmax = pred


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("labels, pred, k, guessing", [
    ([0, 1], [0, 0], 2, True),                      # one class for both images: macro-F1 1/3, balanced 0.5
    ([0, 1], [1, 0], 2, True),                      # swapped: worse than guessing
    ([0, 1], [0, 1], 2, False),
    ([0, 0, 0, 1], [1, 1, 1, 1], 2, True),          # the minority class for every image: accuracy 0.25
    ([0, 0, 0, 1], [0, 0, 0, 0], 2, True),          # the majority for every image: accuracy 0.75, still a guess
    ([0, 0, 1, 1], [0, 1, 1, 1], 2, False),         # 0.75 balanced: better than guessing
    ([0, 1, 2], [2, 2, 2], 3, True),                # 1/3 summed from recalls: not above 1/3
    ([0, 1, 2, 2], [0, 0, 2, 2], 3, False),         # two of three classes found
    ([0, 2, 2], [0, 0, 0], 3, True),                # a class absent: chance is 1/2 over the two present
    ([1, 1, 1], [0, 0, 0], 2, False),               # one class present: nothing to compare
])
def test_chance_level_flags_a_model_no_better_than_a_constant_guess(labels, pred, k, guessing) -> None:
    names = ["benign", "malignant", "normal"][:k]
    report = classification_report(one_hot(pred, k), np.asarray(labels), names)
    reason = chance_level(report, names)
    present = len(set(labels))
    # independent reference: scikit-learn's balanced accuracy against one over the classes present
    expected = bool(present >= 2 and skm.balanced_accuracy_score(labels, pred) <= 1 / present + 1e-9)
    assert (reason is not None) is guessing is expected
    if guessing:
        assert f"of {present} classes" in reason and f"{names[pred[0]]!r} {pred.count(pred[0])}" in reason



def test_the_gather_stays_on_the_cpu_of_a_cpu_run_on_a_gpu_machine(monkeypatch) -> None:
    """The gather went to ignite's idist.device(), the current GPU wherever CUDA exists: a --device cpu run under
    gloo on a GPU machine put every rank's probabilities on GPU 0 (review of session 32's gloo backend choice)."""
    import monai_ext.engines.metrics as metrics_module

    devices: list[str] = []

    def gather(tensor: torch.Tensor, concat: bool) -> torch.Tensor:
        devices.append(tensor.device.type)
        return tensor

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine; the run is on its CPU
    monkeypatch.setattr(metrics_module.idist, "get_world_size", lambda: 2)
    monkeypatch.setattr(metrics_module, "evenly_divisible_all_gather", gather)
    metric = MacroF1(class_names=["a", "b"])
    metric.update((torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1])))
    assert metric.compute() == 1.0 and devices == ["cpu", "cpu"]


def test_auc_of_confident_logits_equals_sklearn_on_the_logits() -> None:
    """A float32 softmax rounded every probability past a logit margin of ~17 to exactly 1.0: a confident false
    positive (margin 20) then tied with the positives above it (30, 25), and the AUC read 0.75 instead of 1.0;
    on overlapping confident scores 0.81 instead of 0.92 (review: stats)."""
    rng = np.random.default_rng(0)
    labels = np.concatenate([[1, 1, 0, 0], rng.integers(0, 2, 300)])
    margins = np.concatenate([[30.0, 25.0, 20.0, -5.0], np.where(labels[4:] == 1, rng.normal(30, 6, 300),
                                                                  rng.normal(14, 6, 300))])
    logits = torch.tensor(np.stack([np.zeros_like(margins), margins], axis=1), dtype=torch.float32)
    report = ClassificationReport(["benign", "malignant"])
    report.update((logits[:4], torch.as_tensor(labels[:4])))
    assert report.compute()["auc"] == 1.0
    report.reset()
    report.update((logits, torch.as_tensor(labels)))
    assert report.compute()["auc"] == pytest.approx(skm.roc_auc_score(labels, margins), abs=1e-12)


@pytest.mark.parametrize("scale", [1.0, 2.0, 10.0])
@pytest.mark.parametrize("classes", [2, 3])
def test_auc_of_logits_past_float64s_softmax_equals_sklearn_on_the_logits(scale: float, classes: int) -> None:
    """A float64 softmax still rounds a probability to 1.0 past a logit margin of ~37: margins 80 and 60 of the
    positives tied with a confident error's 45, and the AUC was again 0.75, not 1.0 (scale 1; at scale 10 every
    score of the set was tied)."""
    labels = np.array([1, 1, 0, 0] + [2] * (classes - 2))
    margins = scale * np.array([80.0, 60.0, 45.0, -5.0] + [0.0] * (classes - 2))
    logits = torch.zeros(len(labels), classes, dtype=torch.float64)
    logits[:, 1] = torch.as_tensor(margins)
    if classes == 3:
        logits[-1, 2] = 100.0 * scale  # the third class's image, confidently right
    report = ClassificationReport([f"c{c}" for c in range(classes)])
    report.update((logits, torch.as_tensor(labels)))
    result = report.compute()
    # the independent reference: scikit-learn on the logit margins, exact in float64 (one-vs-rest of class 1; the
    # other classes' images are ranked right by any score)
    assert skm.roc_auc_score(labels == 1, margins) == 1.0
    assert result["auc"] == 1.0


def test_log_odds_are_computed_on_the_logits_device() -> None:
    """The class mask was made on the CPU whatever the logits' device: CUDA's masked_fill refuses it ("expected self
    and mask to be on the same device"), so every validation on a GPU failed at its first batch. The meta device
    makes the same check on a machine without one."""
    from monai_ext.engines.metrics import log_odds

    assert log_odds(torch.zeros(4, 3, device="meta")).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("classes", [2, 3])
def test_the_report_of_logits_on_a_gpu_is_the_report_of_the_same_logits_on_the_cpu(classes: int) -> None:
    torch.manual_seed(0)
    logits, labels = 20 * torch.randn(16, classes), torch.arange(16) % classes
    reports = []
    for device in ("cpu", "cuda"):
        report = ClassificationReport([f"c{c}" for c in range(classes)])
        report.update((logits.to(device), labels.to(device)))
        reports.append(report.compute())
    assert json.dumps(reports[0]) == json.dumps(reports[1])  # as text: a NaN precision equals itself there


@pytest.mark.parametrize("logits, auc", [
    ([[0.0, -math.inf], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]], 1.0),  # a class masked to -inf: probability 0
    ([[-math.inf, 0.0], [0.0, -math.inf], [0.0, 1.0], [1.0, 0.0]], 0.0),  # probabilities 1 and 0: ranked wrong
])
def test_a_logit_of_minus_infinity_is_a_probability_of_zero_not_a_fault(logits, auc) -> None:
    """The softmax gave such a class a finite 0; its log-odds are -inf, which stopped validation as 'not finite'
    (review A) and which scikit-learn refuses as a score."""
    report = ClassificationReport(["a", "b"])
    report.update((torch.tensor(logits), torch.tensor([0, 1, 0, 1])))
    result = report.compute()
    probabilities = torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=1)[:, 1].numpy()
    assert result["auc"] == pytest.approx(skm.roc_auc_score([0, 1, 0, 1], probabilities)) == auc


@pytest.mark.parametrize("logits", [[[math.inf, 0.0], [0.0, 1.0]], [[math.nan, 0.0], [0.0, 1.0]],
                                    [[-math.inf, -math.inf], [0.0, 1.0]]])
def test_logits_without_probabilities_still_stop_validation(logits) -> None:
    """+inf, NaN or every class at -inf: the softmax is NaN, a diverged network, refused naming the cause."""
    report = ClassificationReport(["a", "b"])
    report.update((torch.tensor(logits), torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="not finite"):
        report.compute()
