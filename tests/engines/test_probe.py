"""Frozen-feature probe and kNN: against scikit-learn and brute-force references, head export, eval-mode features,
unreadable files left out of the features and listed in the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from monai_ext.engines.probe import (
    DEFAULT_CS,
    DEFAULT_KS,
    FrozenFeatureProbe,
    choose_knn_k,
    evaluate_frozen_features,
    export_to_head,
    extract_features,
    fit_linear_probe,
    knn_probabilities,
    probe_class_weight,
)
from monai_ext.networks.classifier import ViTClassifier
from tests.data.unreadable import BAD, image_folder, load

TINY = {"img_size": 32, "patch_size": 16, "embed_dim": 24, "depth": 2, "num_heads": 2}


def blobs(num_classes: int, n: int, dim: int = 16, shift: float = 1.0, seed: int = 0,
          weights: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes whose means differ along a few axes, features on very different scales."""
    rng = np.random.default_rng(seed)
    p = np.array(weights) if weights else np.full(num_classes, 1 / num_classes)
    y = rng.choice(num_classes, size=n, p=p / p.sum())
    means = rng.standard_normal((num_classes, dim)) * shift
    x = means[y] + rng.standard_normal((n, dim))
    return (x * np.logspace(-2, 2, dim)).astype(np.float32), y  # badly scaled, as raw ViT features are


@pytest.mark.parametrize("num_classes", [2, 4])
def test_chosen_c_and_refit_match_an_independent_sklearn_pipeline(num_classes: int) -> None:
    train, val = blobs(num_classes, 80, seed=1), blobs(num_classes, 40, seed=2)
    val = (val[0], val[1])
    cs = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    probe = fit_linear_probe(train, val, num_classes, cs=cs, refit=True)
    names = list(range(num_classes))
    scores = {}
    for c in cs:  # the reference: a plain scikit-learn pipeline per C, scored on validation
        ref = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000))
        ref.fit(*train)
        scores[c] = f1_score(val[1], ref.predict(val[0]), labels=names, average="macro")
    assert scores[probe.c] == pytest.approx(max(scores.values()))
    both = (np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]]))
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=probe.c, class_weight="balanced", max_iter=2000))
    ref.fit(*both)
    test = blobs(num_classes, 50, seed=3)[0]
    np.testing.assert_allclose(probe.probabilities(test), ref.predict_proba(test), atol=1e-5)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_export_to_head_gives_the_probe_probabilities(num_classes: int) -> None:
    model = ViTClassifier(num_classes, linear_probe=True, **TINY).eval()
    images = torch.randn(12, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(images).numpy()
    labels = np.arange(12) % num_classes
    probe = fit_linear_probe((feats, labels), (feats, labels), num_classes, cs=[1.0])
    export_to_head(probe, model.head)
    with torch.no_grad():
        probs = torch.softmax(model(images), dim=1).numpy()
    np.testing.assert_allclose(probs, probe.probabilities(feats), atol=1e-4)


@pytest.mark.parametrize("spread", [3e-4, 1e-5])
def test_export_keeps_the_probe_exact_for_a_feature_flatter_than_the_norms_eps(spread: float) -> None:
    # the head's BatchNorm has eps 1e-6: a feature whose spread is under 1e-3 was once divided by 1e-3, not by its
    # spread, and the exported head's scores left the fitted probe's (test macro-F1 0.80 against 0.70)
    model = ViTClassifier(2, linear_probe=True, **TINY).eval()
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    feats = rng.normal(size=(60, model.head[-1].in_features)).astype(np.float32)
    feats[:, 0] = (labels - 0.5 + rng.normal(scale=0.3, size=60)) * spread  # the one informative channel, flat
    probe = fit_linear_probe((feats, labels), (feats, labels), 2, cs=[1.0])
    assert probe.scale[0] < np.sqrt(model.head[0].eps)
    export_to_head(probe, model.head)
    with torch.no_grad():
        probs = torch.softmax(model.head(torch.from_numpy(feats)), dim=1).numpy()
    np.testing.assert_allclose(probs, probe.probabilities(feats), atol=1e-4)


def test_export_refuses_a_plain_linear_head() -> None:
    model = ViTClassifier(2, linear_probe=False, **TINY)
    x, y = blobs(2, 20, dim=24)
    with pytest.raises(TypeError, match="BatchNorm1d"):
        export_to_head(fit_linear_probe((x, y), (x, y), 2, cs=[1.0]), model.head)


def test_probe_predicts_both_classes_of_an_imbalanced_weak_task() -> None:
    """The SGD probe it replaces collapsed to one class on such data (issue #19)."""
    train, val = blobs(2, 60, shift=0.4, seed=4, weights=(2, 1)), blobs(2, 20, shift=0.4, seed=5, weights=(2, 1))
    probe = fit_linear_probe(train, val, 2)
    pred = probe.probabilities(blobs(2, 200, shift=0.4, seed=6, weights=(2, 1))[0]).argmax(1)
    assert set(pred.tolist()) == {0, 1}


def test_knn_matches_a_brute_force_reference() -> None:
    rng = np.random.default_rng(0)
    bank_x, bank_y, queries = rng.standard_normal((30, 8)), rng.integers(0, 3, 30), rng.standard_normal((7, 8))
    probs = knn_probabilities((bank_x, bank_y), queries, k=5, num_classes=3)

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    sims = unit(queries) @ unit(bank_x).T
    for q in range(len(queries)):
        top = np.argsort(-sims[q])[:5]
        votes = np.bincount(bank_y[top], weights=np.exp(sims[q, top] / 0.07), minlength=3)
        np.testing.assert_allclose(probs[q], votes / votes.sum(), rtol=1e-4)


def sklearn_cosine_knn(bank: tuple[np.ndarray, np.ndarray], queries: np.ndarray, k: int,
                       num_classes: int) -> np.ndarray:
    """DINO's vote through scikit-learn: cosine distance d = 1 - similarity, a neighbour weighing exp((1 - d) / T)."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(k, len(bank[1])), metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1 - d) / 0.07)).fit(*bank)
    probs = np.zeros((len(queries), num_classes))
    probs[:, knn.classes_] = knn.predict_proba(queries)
    return probs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 1e20, 1e-30])
@pytest.mark.parametrize("k", [1, 5, 30])
def test_knn_matches_sklearn_cosine_knn_at_any_feature_scale(scale: float, dtype: type, k: int) -> None:
    """Past ~1.8e19 the float32 L2 norm overflowed and every feature became zero: kNN guessed."""
    rng = np.random.default_rng(3)
    bank_x, bank_y, queries = rng.standard_normal((30, 8)), rng.integers(0, 3, 30), rng.standard_normal((9, 8))
    probs = knn_probabilities(((bank_x * scale).astype(dtype), bank_y), (queries * scale).astype(dtype), k, 3)
    # the reference sees the unscaled features: cosine similarity does not depend on the scale
    np.testing.assert_allclose(probs, sklearn_cosine_knn((bank_x, bank_y), queries, k, 3), atol=1e-6)


def test_knn_of_features_beyond_float32_range_is_not_nan() -> None:
    rng = np.random.default_rng(4)
    bank_x, bank_y, queries = rng.standard_normal((20, 6)), rng.integers(0, 2, 20), rng.standard_normal((5, 6))
    probs = knn_probabilities((bank_x * 1e40, bank_y), queries * 1e40, 5, 2)
    np.testing.assert_allclose(probs, sklearn_cosine_knn((bank_x, bank_y), queries, 5, 2), atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where, match", [("bank", r"^kNN memory \(bank\): features must be finite"),
                                          ("queries", r"^kNN queries: features must be finite")])
def test_knn_refuses_non_finite_features(bad: float, where: str, match: str) -> None:
    rng = np.random.default_rng(5)
    bank_x, bank_y, queries = rng.standard_normal((10, 4)), rng.integers(0, 2, 10), rng.standard_normal((3, 4))
    (bank_x if where == "bank" else queries)[1, 2] = bad
    with pytest.raises(ValueError, match=match + r", got NaN or infinite values in 1 of \d+ rows \(first rows \[1\]\)"):
        knn_probabilities((bank_x, bank_y), queries, 3, 2)


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_evaluate_frozen_features_names_the_split_with_non_finite_features(split: str) -> None:
    """A diverged encoder's NaN: the test split is only scored, and gave NaN kNN probabilities without a word."""
    splits = {name: blobs(2, 20, seed=seed) for seed, name in enumerate(("train", "validation", "test"))}
    splits[split][0][3, 0] = np.nan
    with pytest.raises(ValueError, match=rf"^{split}: features must be finite, got NaN or infinite values in 1 of 20 "
                                         r"rows \(first rows \[3\]\)"):
        evaluate_frozen_features(splits, ["a", "b"], cs=[1.0], ks=[1])


def test_k_is_chosen_on_validation_and_capped_at_the_bank_size() -> None:
    train, val = blobs(3, 12, seed=7), blobs(3, 30, seed=8)
    k, sweep = choose_knn_k(train, val, 3, ks=(1, 5, 50))
    assert [s["k"] for s in sweep] == [1, 5, 12]
    assert k == max(sweep, key=lambda s: (s["val_macro_f1"], s["val_auc"], s["k"]))["k"]


@pytest.mark.parametrize("shift, chosen", [(1.0, 1.0), (6.0, 10.0)])
def test_a_macro_f1_tie_between_cs_goes_to_the_lower_validation_log_loss(shift, chosen) -> None:
    """Every C ties in validation macro-F1 here (frequent on small validation sets); without the log-loss tie-break
    the first or last C of the sweep was kept whatever its calibration (C=0.01 has 3x the log loss of C=1)."""
    features, labels = blobs(2, 60, dim=8, shift=shift, seed=0)
    cs = [1e-2, 1e-1, 1.0, 10.0]
    probe = fit_linear_probe((features[:40], labels[:40]), (features[40:], labels[40:]), 2, cs=cs, refit=False)
    assert len({s["val_macro_f1"] for s in probe.sweep}) == 1, probe.sweep  # the tie this test is about
    assert probe.c == chosen == min(probe.sweep, key=lambda s: s["val_log_loss"])["C"], probe.sweep


BANK = (np.array([[1.0, -0.6], [1.8, -1.3], [-0.7, 0.9], [0.0, 2.0], [0.2, -0.6], [-0.4, -1.1]]),
        np.array([0, 0, 0, 1, 1, 1]))


@pytest.mark.parametrize("queries, chosen", [
    # k=1 and k=3 make the same mistakes (macro-F1 0.83 both), but k=1 ranks the images better (AUC 0.83 vs 0.78)
    ([[-1.3, 0.6], [0.6, 1.3], [-0.8, 1.7], [-0.3, 1.6], [-0.4, -0.7], [0.2, 1.0]], 1),
    # near copies of the bank: every k is perfect in macro-F1 and AUC, so the larger (smoother) k
    ([[1.1, -0.6], [1.7, -1.3], [-0.6, 0.9], [0.1, 2.0], [0.2, -0.5], [-0.4, -1.0]], 3),
])
@pytest.mark.parametrize("ks", [(1, 3), (3, 1)])
def test_a_macro_f1_tie_between_ks_goes_to_the_higher_auc_then_the_larger_k(queries, chosen, ks) -> None:
    """The documented order of choice is macro-F1, then AUC, then the larger k: a k that only ties in macro-F1 was
    kept for its place in the sweep, whatever its AUC."""
    k, sweep = choose_knn_k(BANK, (np.array(queries), BANK[1]), 2, ks=ks)
    assert len({s["val_macro_f1"] for s in sweep}) == 1, sweep  # the tie this test is about
    assert k == chosen, sweep


def test_evaluate_frozen_features_reports_every_scored_split() -> None:
    splits = {"train": blobs(2, 40, seed=9), "validation": blobs(2, 20, seed=10), "test": blobs(2, 30, seed=11)}
    _, record = evaluate_frozen_features(splits, ["a", "b"], cs=[0.1, 1.0], ks=(3, 5))
    assert {"linear_validation", "knn_validation", "linear_test", "knn_test"} <= set(record)
    assert record["linear_test"]["n"] == 30 and record["C"] in (0.1, 1.0) and record["k"] in (3, 5)


def test_features_come_from_eval_mode_and_train_mode_is_restored() -> None:
    model = ViTClassifier(2, drop_path_rate=0.5, **TINY).train()
    batches = [{"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 0, 1])}]
    first, labels = extract_features(model, batches)
    second, _ = extract_features(model, batches)
    np.testing.assert_array_equal(first, second)  # no drop path: deterministic
    assert model.training and first.shape == (4, 24) and labels.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("train", "cs", "match"),
    [
        ((np.zeros((4, 3)), np.array([0, 0, 0, 0])), [1.0], "one class"),
        ((np.zeros((4, 3)), np.array([0, 1, 0, 1])), [0.0], "positive"),
        ((np.zeros((4, 3)), np.array([0, 1, 0, 5])), [1.0], r"\[0, num_classes\).*got num_classes 2 .*from 0 to 5$"),
        ((np.zeros((4, 3)), np.array([0, 1, 0, -1])), [1.0], r"got num_classes 2 and labels from -1 to 1$"),
        ((np.zeros((4, 3)), np.array([0, 1])), [1.0], "train"),
    ],
)
def test_bad_arguments_are_refused(train, cs, match) -> None:
    with pytest.raises(ValueError, match=match):
        fit_linear_probe(train, (np.zeros((2, 3)), np.array([0, 1])), 2, cs=cs)


@pytest.mark.parametrize("given, expected", [
    ("balanced", "balanced"), (" Balanced", "balanced"), (None, None), ("null", None), ("None", None), ("NONE", None),
    ({"0": 1, 1: 5.0}, {0: 1.0, 1: 5.0}),   # scikit-learn's own form; keys may arrive as text
])
def test_class_weight_from_yaml_or_the_command_line(given, expected) -> None:
    """``--probe#class_weight null`` reaches the config as the text 'null'."""
    assert probe_class_weight(given) == expected


def _probe_with(tmp_path: Path, **settings: object) -> FrozenFeatureProbe:
    return FrozenFeatureProbe(None, {"train": [{}], "validation": [{}]}, None, ["benign", "malignant"], str(tmp_path / "m.pt"),
                              None, str(tmp_path), **settings)


BAD_CLASS_WEIGHTS = [
    ("balance", "not 'balanced'"), (1, "not 'balanced'"), ({"zero": 2.0}, "'zero' is not a class index 0..1"),
    ({0: 1, 5: 2}, "5 is not a class index 0..1"), ({-1: 1}, "-1 is not a class index"),
    ({True: 1}, "True is not a class index"), ({0: 1, "0": 2}, "class 0 is given twice"),
    ({0: 1, 1: -3}, "the weight of 1 must be a finite number >= 0, got -3"),
    ({0: 1, 1: float("nan")}, "got nan"), ({0: float("inf")}, "got inf"), ({0: "heavy"}, "got 'heavy'"),
    ({0: True}, "got True"), ({0: 0, 1: 0.0}, "every class weighs 0"), ({}, "the dict is empty"),
]


@pytest.mark.parametrize("given, reason", BAD_CLASS_WEIGHTS)
def test_other_class_weights_are_refused_before_any_fit(given, reason) -> None:
    with pytest.raises(ValueError, match=r"^probe#class_weight must be 'balanced', null \(none\) or \{class index or "
                                         rf"name: weight\}}, got .*: .*{re.escape(reason)}"):
        fit_linear_probe((np.zeros((4, 3)), np.array([0, 1, 0, 1])), (np.zeros((2, 3)), np.array([0, 1])), 2,
                         class_weight=given)


@pytest.mark.parametrize("given, reason", BAD_CLASS_WEIGHTS)
def test_the_bundle_probe_refuses_a_bad_class_weight_before_extracting_features(given, reason, tmp_path) -> None:
    """The runner checks it when the config builds it: no network, no data are touched before the refusal."""
    with pytest.raises(ValueError, match=re.escape(reason)):
        _probe_with(tmp_path, class_weight=given)


@pytest.mark.parametrize("given, expected", [
    ({"benign": 3, "malignant": "0.5"}, {0: 3.0, 1: 0.5}), ({" malignant ": 2}, {1: 2.0}), ({"1": 0}, {1: 0.0}),
])
def test_class_weights_may_name_the_classes(given, expected, tmp_path) -> None:
    assert probe_class_weight(given, ["benign", "malignant"]) == expected
    assert _probe_with(tmp_path, class_weight=given).class_weight == expected


def test_a_weighted_class_missing_from_a_fit_weighs_nothing_there() -> None:
    """A fold's training part may lack a rare class: scikit-learn refuses a class_weight naming it while leaving out
    a class it has; the probe fits the classes it has with their weights (1 where left out)."""
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(40, 3)), np.array([0, 2] * 20)
    features[labels == 2] += 1.5
    probe = fit_linear_probe((features, labels), (features[:6], labels[:6]), 3, cs=[1.0],
                             class_weight={0: 3.0, 1: 4.0}, refit=False)  # class 2 left out: it weighs 1
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight={0: 3.0, 2: 1.0}, max_iter=2000))
    ref.fit(features, labels)
    assert (probe.logits(features).argmax(1) == ref.predict(features)).all()


def test_a_training_part_whose_classes_all_weigh_0_is_refused_in_words() -> None:
    """{0: 0, 1: 0} passes for 3 classes (class 2 weighs 1); a part without class 2 had every sample weigh 0 and
    scikit-learn stopped on a bare ZeroDivisionError."""
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(20, 4)), np.array([0, 1] * 10)
    with pytest.raises(ValueError, match=r"^probe#class_weight \{0: 0\.0, 1: 0\.0\} weighs every class of the training "
                                         r"part 0 \(its classes: \[0, 1\]\)"):
        fit_linear_probe((features, labels), (features[:4], labels[:4]), 3, cs=[1.0], class_weight={0: 0, 1: 0})


def test_a_class_that_weighs_0_beside_one_that_counts_still_fits() -> None:
    """The refusal above is for a part where nothing counts; one class at 0 beside a weighed one fits as sklearn."""
    rng = np.random.default_rng(1)
    features, labels = rng.normal(size=(40, 3)), np.array([0, 1, 2, 2] * 10)
    features[labels == 2] += 1.5
    probe = fit_linear_probe((features, labels), (features[:8], labels[:8]), 3, cs=[1.0], class_weight={0: 0, 1: 0},
                             refit=False)  # class 2 left out: it weighs 1
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight={0: 0, 1: 0, 2: 1}, max_iter=2000))
    ref.fit(features, labels)
    np.testing.assert_allclose(probe.probabilities(features), ref.predict_proba(features), atol=1e-4)


@pytest.mark.parametrize("sweeps, cs, ks", [
    ({"cs": 0.1}, (0.1,), DEFAULT_KS), ({"ks": 5}, DEFAULT_CS, (5,)),   # --probe#cs 0.1 arrives as a float
    ({"cs": (0.1, 1, 10), "ks": [1, 3]}, (0.1, 1.0, 10.0), (1, 3)),     # --probe#cs 0.1,1,10: fire's tuple
    ({"cs": "0.1,1,10", "ks": "1, 3"}, (0.1, 1.0, 10.0), (1, 3)),       # a YAML string
    ({"cs": "null", "ks": []}, DEFAULT_CS, DEFAULT_KS),
])
def test_probe_sweeps_from_yaml_or_the_command_line(sweeps, cs, ks, tmp_path) -> None:
    probe = _probe_with(tmp_path, **sweeps)
    assert probe.cs == cs and probe.ks == ks
    assert all(type(c) is float for c in probe.cs) and all(type(k) is int for k in probe.ks)


@pytest.mark.parametrize("setting, given", [
    ("cs", "abc"), ("cs", 0), ("cs", [1, -1]), ("cs", float("nan")), ("cs", True), ("cs", {"a": 1}),
    ("ks", "abc"), ("ks", 0), ("ks", 2.5), ("ks", [1, "x"]),
])
def test_bad_probe_sweeps_are_refused_naming_the_setting(setting, given, tmp_path) -> None:
    with pytest.raises(ValueError, match=rf"^probe#{setting} must be .*, got {re.escape(repr(given))}$"):
        _probe_with(tmp_path, **{setting: given})


class _PixelFeature(torch.nn.Module):
    """Features (N, 1): the value every pixel of the image holds (its case index in ``image_folder``)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, :1].float()


def test_features_leave_unreadable_files_out_instead_of_repeating_a_neighbour(tmp_path) -> None:
    probe = FrozenFeatureProbe(_PixelFeature(), {"train": [{}], "validation": [{}]}, load(), ["even", "odd"],
                               str(tmp_path / "model.pt"), None, str(tmp_path), batch_size=3)
    features, labels, skipped = probe.features(image_folder(tmp_path, good=8))
    assert features[:, 0].tolist() == list(range(8)) and labels.tolist() == [0, 1] * 4
    assert sorted(Path(s["image"]).name for s in skipped) == sorted(BAD) and all(s["reason"] for s in skipped)


class _Record:
    def state_dict(self) -> dict:
        return {"kind": "classifier"}


def test_probe_report_counts_each_readable_image_once_and_lists_the_skipped(tmp_path) -> None:
    splits = {}
    for name in ("train", "validation", "test"):
        (tmp_path / name).mkdir()
        splits[name] = image_folder(tmp_path / name, good=8)
    model = ViTClassifier(2, img_size=16, patch_size=8, in_chans=1, embed_dim=24, depth=1, num_heads=2,
                          linear_probe=True)
    probe = FrozenFeatureProbe(model, splits, load(), ["even", "odd"], str(tmp_path / "model.pt"), _Record(),
                               str(tmp_path), batch_size=4, cs=[1.0], ks=[1, 3])
    report = probe.run()
    assert json.loads((tmp_path / "probe_report.json").read_text()) == report
    for name in ("validation", "test"):
        for kind in ("linear", "knn"):
            assert report[f"{kind}_{name}"]["n"] == 8
            assert [c["support"] for c in report[f"{kind}_{name}"]["per_class"].values()] == [4, 4]
    assert set(report["skipped"]) == {"train", "validation", "test"}
    for skipped in report["skipped"].values():
        assert sorted(Path(s["image"]).name for s in skipped) == sorted(BAD)


def test_evaluate_frozen_features_reads_class_weight_null_as_none() -> None:
    """Both its fits (the C sweep and the refit on train + validation) see None, not the text 'null'."""
    rng = np.random.default_rng(0)
    labels = (np.arange(12) % 3 == 0).astype(int)  # 4 against 8: balanced weighting would change the fit
    splits = {name: (rng.normal(size=(12, 4)), labels) for name in ("train", "validation", "test")}
    probe, _ = evaluate_frozen_features(splits, ["a", "b"], cs=[1.0], ks=[1], class_weight="null")
    unweighted, _ = evaluate_frozen_features(splits, ["a", "b"], cs=[1.0], ks=[1], class_weight=None)
    balanced, _ = evaluate_frozen_features(splits, ["a", "b"], cs=[1.0], ks=[1], class_weight="balanced")
    assert np.allclose(probe.coef, unweighted.coef) and not np.allclose(probe.coef, balanced.coef)


def _brightness_folder(folder: Path, per_class: int, seed: int) -> list[dict[str, object]]:
    """16 x 16 noise PNGs, class 1 brighter on average, drawn from ``seed`` (train and validation apart)."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    items: list[dict[str, object]] = []
    for i in range(2 * per_class):
        path = folder / f"case{i}.png"
        pixels = rng.integers(0, 160, (16, 16)) + 40 * (i % 2) * rng.random()
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
        items.append({"image": str(path), "label": i % 2, "id": f"case{i}"})
    return items


def test_the_checkpoint_keeps_the_head_that_scored_validation(tmp_path) -> None:
    """The saved head is refit on train + validation and scores the validation images it was fit on (1.0 where
    training recorded 0.52); the train-only head, whose figures are the recorded ones, is kept beside it, and the
    evaluate overlay's ``use_validation_probe`` puts it in place for ``--eval_split validation`` only."""
    from monai_ext.apps.bundle_support import use_validation_probe
    from monai_ext.engines.metrics import classification_report
    from monai_ext.io.checkpoints import read_checkpoint

    splits = {name: _brightness_folder(tmp_path / name, 8, seed) for name, seed in (("train", 0), ("validation", 1))}

    def tiny() -> ViTClassifier:
        torch.manual_seed(0)
        return ViTClassifier(2, img_size=16, patch_size=8, in_chans=1, embed_dim=24, depth=1, num_heads=2,
                             linear_probe=True)

    runner = FrozenFeatureProbe(tiny(), splits, load(), ["dark", "bright"], str(tmp_path / "model.pt"), _Record(),
                                str(tmp_path), batch_size=4, cs=[100.0], ks=[1])
    report = runner.run()
    features, labels, _ = runner.features(splits["validation"])
    saved = read_checkpoint(tmp_path / "model.pt")
    saved["arch"] = {"arch_args": {"linear_probe": True}}  # the bundle's record says so; _Record() does not
    torch.save(saved, tmp_path / "model.pt")

    def scored_with(eval_split: str) -> dict:
        model = tiny()
        model.load_state_dict(saved["model"])
        model.eval()
        use_validation_probe(model, tmp_path / "model.pt", eval_split)
        with torch.no_grad():
            probs = torch.softmax(model.head(torch.from_numpy(features)), dim=1).numpy()
        return classification_report(probs, labels, ["dark", "bright"])

    recorded = report["linear_validation"]
    assert saved["val_macro_f1"] == recorded["macro_f1"]
    validation = scored_with("validation")
    assert validation["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=1e-6)
    assert validation["auc"] == pytest.approx(recorded["auc"], abs=1e-4)
    assert validation["confusion_matrix"] == recorded["confusion_matrix"]
    # the saved head, fit on these images too, scores them otherwise (C=100: near perfectly)
    assert scored_with("test")["macro_f1"] > recorded["macro_f1"]
