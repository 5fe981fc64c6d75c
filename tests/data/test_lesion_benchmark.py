"""The subtle lesion benchmark: deterministic, each class carries its cue, the same lesion sizes in every class."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from monai_ext.data.lesion_benchmark import (
    SUBTLE_CLASSES,
    simulate_subtle_frame,
    subtle_lesion,
    subtle_lesion_dataset,
    subtle_pretraining_frames,
)
from monai_ext.data.synthetic import SimulatorConfig

SHAPE = (256, 192)


def test_frames_are_deterministic_and_carry_a_lesion() -> None:
    config = SimulatorConfig(size=128, beam_shape=(128, 96), screen_capture=False)
    a, b = (simulate_subtle_frame(3, "shadowing", config) for _ in range(2))
    np.testing.assert_array_equal(a.image, b.image)
    assert a.lesion_mask.any() and a.meta["lesion"]["kind"] == "shadowing"


def perimeter_ratio(mask: np.ndarray) -> float:
    """Perimeter squared over area: 4 pi for a disc, larger for a wavy margin."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return cv2.arcLength(contours[0], True) ** 2 / mask.sum()


def test_each_class_differs_from_circumscribed_by_its_own_cue_only() -> None:
    def draws(kind):
        return [subtle_lesion(np.random.default_rng(i), SHAPE, kind) for i in range(12)]

    base, lobed, hetero, shadow = (draws(k) for k in SUBTLE_CLASSES)
    # same sizes and mean echogenicity distribution (same generator draws before the cue)
    assert [p["size"] for *_, p in base] == [p["size"] for *_, p in shadow]
    assert np.mean([perimeter_ratio(m) for m, *_ in lobed]) > 1.1 * np.mean([perimeter_ratio(m) for m, *_ in base])

    def spread(ds):
        return np.mean([np.std(np.log(e[m])) for m, e, *_ in ds])

    assert spread(hetero) > 3 * spread(base) + 0.1
    assert all(a > 0.012 for *_, a, _ in shadow) and all(a == pytest.approx(0.012) for *_, a, _ in base)


def test_dataset_folder_is_reused_and_bad_arguments_are_refused(tmp_path) -> None:
    root = subtle_lesion_dataset(tmp_path, per_class=2, size=64)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(SUBTLE_CLASSES)
    stamp = (root / "shadowing" / "us_000001.png").stat().st_mtime_ns
    assert subtle_lesion_dataset(tmp_path, per_class=2, size=64) == root
    assert (root / "shadowing" / "us_000001.png").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="per_class"):
        subtle_lesion_dataset(tmp_path, per_class=0)
    with pytest.raises(ValueError, match="kind"):
        subtle_lesion(np.random.default_rng(0), SHAPE, "spiculated")


def test_pretraining_frames_do_not_depend_on_the_worker_count(tmp_path) -> None:
    one = subtle_pretraining_frames(tmp_path / "one", num=300, seed=3, size=64)  # chunks of 150 in parallel
    two = subtle_pretraining_frames(tmp_path / "two", num=300, seed=3, size=64, workers=2)
    files = sorted(p.name for p in one.glob("*.png"))
    assert len(files) == 300 and files == sorted(p.name for p in two.glob("*.png"))
    for name in files[::37] + files[-1:]:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert len({(one / name).read_bytes() for name in files[:5]}) == 5  # frames differ from one another
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        subtle_pretraining_frames(tmp_path / "three", num=3, workers=0)


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), -0.5, "1", True])
def test_a_strength_that_is_not_a_finite_number_of_at_least_0_is_refused(tmp_path, strength) -> None:
    """NaN passed ``strength < 0``; NaN and inf then wrote black heterogeneous and shadowing frames and lesion-free
    microlobulated ones into the cache as a benchmark, without a word."""
    with pytest.raises(ValueError, match=r"strength must be a finite number of at least 0, got "):
        subtle_lesion(np.random.default_rng(0), SHAPE, "heterogeneous", strength)
    with pytest.raises(ValueError, match=r"strength must be a finite number of at least 0, got "):
        subtle_lesion_dataset(tmp_path, per_class=1, strength=strength, size=64)
    assert not any(tmp_path.iterdir())  # refused before its folder was made


@pytest.mark.parametrize("strength", [0, 0.0, 2, np.float32(1.5)])
def test_a_finite_strength_of_at_least_0_is_taken(strength) -> None:
    mask, echo, _, params = subtle_lesion(np.random.default_rng(0), SHAPE, "heterogeneous", strength)
    assert mask.any() and np.isfinite(echo).all() and np.isfinite(params["cue"])


@pytest.mark.parametrize("strength", [np.float32(1.5), np.int64(2)])
def test_a_numpy_strength_makes_a_benchmark_with_its_record(tmp_path, strength) -> None:
    """check_strength takes numpy numbers, but the record of such a strength failed json.dumps once every frame was
    written ("Object of type float32 is not JSON serializable"), leaving the folder without its record."""
    import json

    root = subtle_lesion_dataset(tmp_path, per_class=1, strength=strength, size=64)
    assert json.loads((root / "benchmark.json").read_text())["strength"] == float(strength)
    assert subtle_lesion_dataset(tmp_path, per_class=1, strength=float(strength), size=64) == root
