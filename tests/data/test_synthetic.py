"""The B-mode simulator: determinism, geometry, speckle statistics, annotation ground truth, writers, throughput."""

from __future__ import annotations

import re
import sys

import cv2
import numpy as np
import pytest
from scipy import stats

from monai_ext.data import synthetic as syn
from tests.warm_python import run_python


def test_same_seed_same_image_and_different_seeds_differ() -> None:
    config = syn.SimulatorConfig(screen_capture=True)
    a, b, c = syn.simulate_frame(7, config), syn.simulate_frame(7, config), syn.simulate_frame(8, config)
    np.testing.assert_array_equal(a.screen, b.screen)
    np.testing.assert_array_equal(a.annotation_mask, b.annotation_mask)
    assert not np.array_equal(a.image, c.image)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("seed", range(4))
def test_sector_fov_matches_geometry(seed: int) -> None:
    frame = syn.simulate_frame(seed, syn.SimulatorConfig(geometry="curvilinear"))
    g = frame.meta["geometry"]
    # Independent reference: an annular sector drawn with OpenCV's ellipse arcs (angles from the +x axis, clockwise).
    ref = np.zeros((256, 256), np.uint8)
    center = (int(round(g["apex_col"] * 16)), int(round(g["apex_row"] * 16)))
    span = np.degrees(g["half_angle"])
    for radius, value in ((g["r_outer"], 255), (g["r_inner"], 0)):
        axes = (int(round(radius * 16)), int(round(radius * 16)))
        cv2.ellipse(ref, center, axes, 0, 90 - span, 90 + span, value, -1, cv2.LINE_8, shift=4)
    if g["r_inner"] > 0:  # the inner wedge down to the apex removed as well
        cv2.ellipse(ref, center, (int(g["r_inner"] * 16),) * 2, 0, 0, 360, 0, -1, cv2.LINE_8, shift=4)
    assert _iou(frame.fov_mask, ref > 0) > 0.97
    assert (frame.bmode[~frame.fov_mask] == 0).all()


@pytest.mark.parametrize("seed", range(3))
def test_linear_fov_is_the_rectangle(seed: int) -> None:
    frame = syn.simulate_frame(seed, syn.SimulatorConfig(geometry="linear"))
    g = frame.meta["geometry"]
    ref = np.zeros((256, 256), bool)
    ref[g["top"] : g["top"] + g["height"], g["left"] : g["left"] + g["width"]] = True
    np.testing.assert_array_equal(frame.fov_mask, ref)
    assert (frame.bmode[frame.fov_mask] > 0).mean() > 0.9  # tissue fills the field of view


def test_fully_developed_speckle_is_rayleigh() -> None:
    rng = np.random.default_rng(0)
    shape = (512, 512)
    psf = syn.point_spread_function(4.0, 2.0, 1.2)
    env = syn.beamform_envelope(rng, np.ones(shape), np.zeros(shape), psf, tgc_per_sample=0.0).astype(np.float64)
    ratio = env.mean() / env.std()
    assert abs(ratio - np.sqrt(np.pi / (4 - np.pi))) < 0.05, ratio  # 1.913
    sample = env[::8, ::4].ravel()  # decimated: roughly independent speckle cells
    sigma = sample.mean() / np.sqrt(np.pi / 2)
    assert stats.kstest(sample, "rayleigh", args=(0, sigma)).statistic < 0.03


def test_annotation_mask_is_exactly_what_was_drawn() -> None:
    frame = syn.simulate_frame(3, syn.SimulatorConfig(screen_capture=True))
    ann = frame.annotation_mask
    assert 200 < ann.sum() < 0.2 * ann.size
    untouched = np.repeat(frame.bmode[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(frame.screen[~ann], untouched[~ann])


def test_lesion_styles_have_their_cues() -> None:
    rng_cfg = syn.SimulatorConfig(geometry="linear", lesion_probability=0.0)
    for style in syn.LESION_STYLES:
        frame = syn.simulate_frame(11, rng_cfg, lesion=style)
        assert frame.lesion_mask.sum() > 50, style
        inside = frame.bmode[frame.lesion_mask].mean()
        ring = cv2.dilate(frame.lesion_mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
        around = frame.bmode[ring & ~frame.lesion_mask & frame.fov_mask].mean()
        assert inside < around, style  # hypo- or anechoic
    with pytest.raises(ValueError, match="'round'"):
        syn.simulate_frame(0, rng_cfg, lesion="round")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="'fan'"):
        syn.SimulatorConfig(geometry="fan")
    with pytest.raises(ValueError, match="16"):
        syn.SimulatorConfig(size=16)


@pytest.mark.parametrize("fmt", ["png", "dcm", "nii"])
def test_writers_round_trip(tmp_path, fmt: str) -> None:
    import nibabel as nib
    import pydicom

    frame = syn.simulate_frame(1, syn.SimulatorConfig(screen_capture=False))
    path = syn.write_frame(frame, tmp_path / "frame", fmt)
    if fmt == "png":
        back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    elif fmt == "dcm":
        ds = pydicom.dcmread(path)
        assert ds.Modality == "US" and str(ds.PatientName) == ""
        back = ds.pixel_array
    else:
        back = np.asarray(nib.load(str(path)).dataobj).T  # (x, y): columns along x
    np.testing.assert_array_equal(back, frame.image)


def test_dataset_generation_is_reused_and_cli_prints_throughput(tmp_path) -> None:
    out = tmp_path / "syn"
    cmd = [sys.executable, "-m", "monai_ext", "synthesize", str(out), "--num", "24", "--workers", "2"]
    result = run_python(cmd, check=True)
    assert "24 images in" in result.stdout and "images/s" in result.stdout
    print(result.stdout.strip())
    first = sorted(p.name for p in out.glob("us_*.png"))
    assert len(first) == 24
    record = syn.generate_dataset(out, 24, 0, syn.SimulatorConfig(screen_capture=True))
    assert record["files"] == first  # reused, same names
    same = syn.simulate_frame(np.random.default_rng([0, 5]), syn.SimulatorConfig(screen_capture=True))
    written = cv2.imread(str(out / "us_000005.png"), cv2.IMREAD_COLOR_RGB)
    np.testing.assert_array_equal(written, same.screen)


def _generate(folder: str) -> int:
    return len(syn.generate_dataset(folder, 12, 0, syn.SimulatorConfig(), workers=1)["files"])


def test_two_processes_may_generate_the_same_folder_at_once(tmp_path) -> None:
    """torchrun ranks each build the default data on first use; the writes must not collide."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        counts = list(pool.map(_generate, [str(tmp_path / "same")] * 2))
    assert counts == [12, 12]
    assert sorted(p.name for p in (tmp_path / "same").iterdir()) == sorted(
        [f"us_{i:06d}.png" for i in range(12)] + ["synthetic.json"])


@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
def test_doppler_box_ground_truth(geometry: str) -> None:
    """Colour flow replaces the B-mode inside the field of view and is never gray; the box outline is annotation."""
    config = syn.SimulatorConfig(size=256, geometry=geometry, screen_capture=True, doppler_probability=1.0)
    frame = syn.simulate_frame(3, config)
    flow = frame.flow_mask
    assert flow.sum() > 200 and not (flow & ~frame.fov_mask).any() and not (flow & frame.annotation_mask).any()
    colours = frame.screen[flow].astype(int)
    assert (colours.max(1) - colours.min(1)).min() >= 150
    outline = frame.annotation_mask & frame.fov_mask & (frame.screen == 235).all(-1)
    rows, cols = np.nonzero(flow)
    assert outline[rows.min() - 1 :, cols.min() - 1 :].any()  # the box's outline around the flow
    still_gray = ~flow & ~frame.annotation_mask
    np.testing.assert_array_equal(frame.screen[still_gray][:, 0], frame.bmode[still_gray])
    again = syn.simulate_frame(3, config)
    np.testing.assert_array_equal(again.screen, frame.screen)
    plain = syn.simulate_frame(3, syn.SimulatorConfig(size=256, geometry=geometry, screen_capture=True))
    np.testing.assert_array_equal(plain.screen[~frame.annotation_mask & ~flow],
                                  frame.screen[~frame.annotation_mask & ~flow])  # drawn last: nothing else moves
    assert not plain.flow_mask.any()


def test_low_gain_edges_darken_the_outer_scan_lines_only() -> None:
    flat = syn.simulate_frame(5, syn.SimulatorConfig(geometry="linear"))
    dim = syn.simulate_frame(5, syn.SimulatorConfig(geometry="linear", edge_gain_db=20.0))
    cols = np.flatnonzero(flat.fov_mask.any(0))
    edge, centre = cols[:3], cols[len(cols) // 2 - 10 : len(cols) // 2 + 10]
    assert dim.bmode[:, edge].mean() < flat.bmode[:, edge].mean() - 40
    assert abs(dim.bmode[:, centre].mean() - flat.bmode[:, centre].mean()) < 3
    with pytest.raises(ValueError, match="edge_gain_db must be >= 0, got -1"):
        syn.SimulatorConfig(edge_gain_db=-1)


@pytest.mark.parametrize("kwargs, message", [
    ({"lesion_scale": 0.0}, "lesion_scale must be > 0, got 0.0"),  # an empty mask, the metadata saying "lesion"
    ({"lesion_scale": -1.0}, "lesion_scale must be > 0, got -1.0"),  # ovals drawn, irregular lesions never
    ({"lesion_scale": float("nan")}, "lesion_scale must be > 0, got nan"),
    ({"axial_sigma": 0.0}, "axial_sigma must be > 0, got 0.0"),  # a black field of view
    ({"lateral_sigma": -1.0}, "lateral_sigma must be > 0, got -1.0"),
    ({"pulse_period": 0}, "pulse_period must be > 0, got 0"),
    ({"dynamic_range_db": (0.0, 0.0)}, "dynamic_range_db must be an increasing (low, high) pair of positive dB, "
                                       "got (0.0, 0.0)"),  # black
    ({"dynamic_range_db": (-60.0, -45.0)}, "got (-60.0, -45.0)"),  # white
    ({"dynamic_range_db": (65.0, 45.0)}, "got (65.0, 45.0)"),  # numpy's "high - low < 0", naming no option
    ({"dynamic_range_db": 60.0}, "dynamic_range_db must be a (low, high) pair of dB (equal values for a fixed "
                                 "range), got 60.0"),  # "cannot unpack non-iterable float object"
    ({"dynamic_range_db": "60"}, "got '60'"),
])
def test_settings_that_make_a_wrong_frame_are_refused_by_name(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        syn.SimulatorConfig(**kwargs)


@pytest.mark.parametrize("style", syn.LESION_STYLES)
@pytest.mark.parametrize("kwargs", [{"lesion_scale": 0.01}, {"beam_shape": (4, 4)}])
def test_a_lesion_finer_than_a_beam_sample_is_refused_not_reported_with_an_empty_mask(style: str, kwargs: dict) -> None:
    """The metadata reported the lesion while its mask (and image) held none of it: a "lesion" item with an empty
    ground truth in a segmentation set."""
    with pytest.raises(ValueError, match=rf"the {style} lesion \(size .* samples\) covers no sample of the "):
        syn.simulate_frame(5, syn.SimulatorConfig(**kwargs), style)  # seed 5: a lesion of 0.32 samples in (4, 4)


@pytest.mark.parametrize("dynamic_range_db", [(50.0, 50.0), (45, 65), [40.0, 80.0]])
def test_a_fixed_or_integer_dynamic_range_is_accepted(dynamic_range_db) -> None:
    frame = syn.simulate_frame(0, syn.SimulatorConfig(size=64, dynamic_range_db=dynamic_range_db), "oval")
    assert frame.lesion_mask.any() and frame.bmode[frame.fov_mask].mean() > 20


@pytest.mark.parametrize("per_class", [0, -3])
def test_the_lesion_benchmark_names_its_own_option(tmp_path, per_class: int) -> None:
    """It was refused as "num must be at least 1", an option of generate_dataset the caller never gave."""
    with pytest.raises(ValueError, match=f"per_class must be at least 1, got {per_class}"):
        syn.synthetic_lesion_dataset(tmp_path, per_class=per_class)
    assert not any(tmp_path.iterdir())


def _generated_folders():
    """(name, make(cache) -> folder, record file name) of each generator that caches a folder of frames."""
    from monai_ext.data.lesion_benchmark import subtle_lesion_dataset, subtle_pretraining_frames
    from monai_ext.data.segmentation import synthetic_segmentation_dataset

    small = syn.SimulatorConfig(size=64)
    return [
        ("generate_dataset", lambda cache: (syn.generate_dataset(cache / "gen", 2, config=small, workers=1),
                                            cache / "gen")[1], syn.GENERATION_RECORD),
        ("subtle_lesion_dataset", lambda cache: subtle_lesion_dataset(cache, per_class=1, size=64), "benchmark.json"),
        ("subtle_pretraining_frames", lambda cache: subtle_pretraining_frames(cache, num=2, size=64), "frames.json"),
        ("synthetic_segmentation_dataset", lambda cache: synthetic_segmentation_dataset(cache, num=5),
         "synthetic.json"),
    ]


@pytest.mark.parametrize("older", [False, True])
@pytest.mark.parametrize("index", range(4), ids=[name for name, _, _ in _generated_folders()])
def test_a_folder_cached_by_another_simulator_version_is_made_again(tmp_path, index: int, older: bool) -> None:
    """Generated folders were reused whenever their settings matched, so frames cached by an older simulator were
    served as this one's; the records now hold SIMULATOR_VERSION. A folder of this version is reused as is."""
    import json

    _, make, record_name = _generated_folders()[index]
    folder = make(tmp_path)
    first = sorted(folder.rglob("*.png"))[0]
    original = first.read_bytes()
    cv2.imwrite(str(first), np.zeros((4, 4), np.uint8))  # stands for a frame the other simulator drew
    if older:
        record_path = folder / record_name
        record = json.loads(record_path.read_text())
        assert record["simulator"] == syn.SIMULATOR_VERSION
        record_path.write_text(json.dumps({**record, "simulator": syn.SIMULATOR_VERSION - 1}))
    assert make(tmp_path) == folder
    assert (first.read_bytes() == original) is older
