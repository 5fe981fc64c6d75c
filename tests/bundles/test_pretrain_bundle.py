"""The pretraining bundle end to end, through ``python -m monai.bundle`` as users run it."""

from __future__ import annotations

import json
import signal

import cv2
import numpy as np
import pytest
import torch

from monai_ext.networks.checkpoints import build_from_checkpoint, read_checkpoint
from tests.bundles.helpers import PRETRAIN, REPO, run_bundle, tiny_pretrain_overrides

pytestmark = pytest.mark.slow
TRAIN = "bundles/usf_mae_pretrain/configs/train.yaml"


@pytest.fixture(scope="module")
def cache(module_tmp):
    return module_tmp("synthetic_cache")


@pytest.fixture(scope="module")
def trained(module_tmp, cache):
    """One short training run from the repository root, shared by the tests that inspect its outputs."""
    out = module_tmp("pretrain")
    result = run_bundle([TRAIN], {**tiny_pretrain_overrides(out, cache), "train#trainer#max_epochs": 2})
    return out, result


def test_training_writes_history_best_model_grid_and_checkpoint(trained) -> None:
    out, result = trained
    history = json.loads((out / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["val_loss"]) for h in history)
    best = read_checkpoint(out / "models" / "model.pt")
    assert best["val_loss"] == pytest.approx(min(h["val_loss"] for h in history))
    model = build_from_checkpoint(out / "models" / "model.pt")
    assert model.arch_args["img_size"] == 64
    grid = cv2.imread(str(out / "eval" / "reconstructions" / "latest.png"))
    assert grid.shape == (2 * 192, 4 * 192, 3)  # 2 images x 4 columns, 64 px panels enlarged 3x for the captions
    assert (out / "models" / "checkpoint_iteration=4.pt").is_file()  # 17 train images // 8 = 2 steps x 2 epochs
    assert "reconstruction grid:" in result.stdout


def test_evaluate_reproduces_the_training_validation_loss(trained, cache) -> None:
    out, _ = trained
    grids = out / "eval" / "reconstructions"
    training_grids = {p.name: p.read_bytes() for p in grids.glob("*.png")}
    configs = [TRAIN, "bundles/usf_mae_pretrain/configs/evaluate.yaml"]
    result = run_bundle(configs, tiny_pretrain_overrides(out, cache))
    reported = float(result.stdout.split("val_loss ")[-1].split()[0])
    assert reported == pytest.approx(read_checkpoint(out / "models" / "model.pt")["val_loss"], rel=1e-6)
    # its grid is its own: the training's epoch_0001.png and latest.png in the same folder were overwritten
    assert f"grid: {grids / 'evaluate.png'}" in result.stdout
    assert {name: (grids / name).read_bytes() for name in training_grids} == training_grids


def test_evaluate_scores_every_image_of_a_held_out_archive_whatever_the_seed(trained, cache, tmp_path) -> None:
    """``eval_split all``: an archive kept out of pretraining is scored whole; the validation part would be a
    seed-dependent quarter of it."""
    out, _ = trained
    archive = tmp_path / "other scanner"
    archive.mkdir()
    for i in range(5):
        cv2.imwrite(str(archive / f"frame {i}.png"), np.random.default_rng(i).integers(0, 255, (70, 90), np.uint8))
    configs = [TRAIN, "bundles/usf_mae_pretrain/configs/evaluate.yaml"]
    losses = []
    for seed in (0, 1):
        result = run_bundle(configs, tiny_pretrain_overrides(out, cache, dataset_dir=str(archive), seed=seed,
                                                             eval_split="all", output_dir=str(tmp_path / "eval")))
        assert "reconstruction loss on 5 image(s) (eval_split all)" in result.stdout + result.stderr
        losses.append(float(result.stdout.split("val_loss ")[-1].split()[0]))
    assert np.isfinite(losses[0]) and losses[0] == pytest.approx(losses[1], rel=1e-6)
    bad = run_bundle(configs, tiny_pretrain_overrides(out, cache, eval_split="test"), check=False)
    assert bad.returncode == 2 and "eval_split must be one of ['validation', 'all'], got 'test'" in bad.stderr


def test_inference_writes_the_reconstruction_picture(trained, cache, tmp_path) -> None:
    out, _ = trained
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"scan {i}.png"), np.random.default_rng(i).integers(0, 255, (90, 120), np.uint8))
    # standalone inference config: arch and image size come from the checkpoint's record
    run_bundle(["bundles/usf_mae_pretrain/configs/inference.yaml"],
               {"ckpt_dir": str(out / "models"), "output_dir": str(out / "eval"), "input_dir": str(images),
                "grid_images": 2})
    grid = cv2.imread(str(out / "eval" / "reconstructions" / "inference.png"))
    assert grid.shape == (2 * 192, 4 * 192, 3)  # 2 images x 4 columns, 64 px panels enlarged 3x for the captions
    assert not np.array_equal(cv2.imread(str(out / "eval" / "reconstructions" / "latest.png")), grid)  # training's


def test_runs_from_inside_the_bundle_folder_with_deannotation_and_physics_recipe(tmp_path, cache) -> None:
    overrides = tiny_pretrain_overrides(tmp_path, cache, epochs=1, deannotate=True, recipe="ultrasound_physics")
    run_bundle(["configs/train.yaml"], overrides, cwd=PRETRAIN)
    assert (tmp_path / "models" / "model.pt").is_file()


@pytest.mark.parametrize("deannotate,recipe,expected,absent", [
    (True, "ultrasound_physics", {"Deannotated", "RandSpeckled", "RandDepthGaind", "RandResizedCropd"}, set()),
    (False, "ultrasound", {"RandResizedCropd"}, {"Deannotated", "RandSpeckled"}),
])
def test_deannotation_and_recipe_choose_the_transforms(tmp_path, deannotate, recipe, expected, absent) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / TRAIN))
    parser.update({"deannotate": deannotate, "recipe": recipe, "bundle_root": str(PRETRAIN)})
    names = {type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").transforms}
    assert expected <= names and not (absent & names)


def test_corrupt_images_are_skipped_with_a_warning_and_a_set_smaller_than_a_batch_trains(tmp_path, cache) -> None:
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    for i in range(20):
        cv2.imwrite(str(data / f"good_{i}.png"), np.random.default_rng(i).integers(0, 255, (80, 80), np.uint8))
    good = (data / "good_0.png").read_bytes()
    (data / "nested" / "truncated.png").write_bytes(good[: len(good) // 3])
    (data / "text.png").write_text("this is not an image")
    (data / "empty.jpg").write_bytes(b"")
    # 21 pictures after the screening, 16 for training: fewer than one batch of 32 (it used to give zero steps and
    # "total_steps must be at least 1, got 0")
    result = run_bundle([TRAIN], tiny_pretrain_overrides(tmp_path, cache, dataset_dir=str(data), epochs=1,
                                                         val_fraction=0.25, batch_size=32))
    log = result.stdout + result.stderr
    # a header no reader knows and an empty file are left out before the split, in one warning; a file damaged
    # further in is skipped when loaded, with the reason
    screened = [line for line in log.splitlines() if "cannot be pictures and are left out before the split" in line]
    assert len(screened) == 1 and "2 of 23 picture file(s)" in screened[0], screened
    assert "text.png: not a picture PIL recognises" in screened[0] and "empty.jpg: empty file (0 bytes)" in screened[0]
    warned = [line for line in log.splitlines() if "skipping unreadable image" in line]
    assert any("truncated.png" in line and "truncated" in line.split("truncated.png", 1)[1] for line in warned), warned
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())[0]["epoch"] == 1
    assert [p.name for p in (tmp_path / "models").glob("checkpoint_iteration=*.pt")] == ["checkpoint_iteration=1.pt"]
    # evaluate without restating the data scores the part this training held out: it once scored 200 frames of
    # the synthetic default (after simulating 2000 of them) while the docs promised the validation part
    record = read_checkpoint(tmp_path / "models" / "model.pt")["arch"]["config"]
    assert {k: record[k] for k in ("dataset_dir", "val_fraction")} == {"dataset_dir": str(data), "val_fraction": 0.25}
    evaluated = run_bundle([TRAIN, "bundles/usf_mae_pretrain/configs/evaluate.yaml"],
                           {k: v for k, v in tiny_pretrain_overrides(tmp_path, cache).items()
                            if k not in ("dataset_dir", "val_fraction", "seed", "num_synthetic")})
    log = evaluated.stdout + evaluated.stderr
    trained_on = next(line for line in (result.stdout + result.stderr).splitlines() if "pretraining data from" in line)
    assert trained_on.split("pretraining data from ")[1] in log, log[-3000:]
    assert "synthetic default data" not in log


def _final_checkpoint(folder):
    return read_checkpoint(sorted(folder.glob("checkpoint_iteration=*.pt"))[-1])


# An overlay that SIGKILLs the run right after iteration 3 (the first of epoch 2 of 3): MONAI's "+" keys append to
# the base config's lists, so the kill point is exact and no test loop races the run's progress.
KILL_AFTER_ITERATION_3 = """
+imports:
  - $import signal
+initialize:
  - "$@train#trainer.add_event_handler(ignite.engine.Events.ITERATION_COMPLETED(once=3), lambda e: os.kill(os.getpid(), signal.SIGKILL))"
"""


def test_killed_run_resumes_at_the_right_epoch_iteration_and_lr(tmp_path, cache) -> None:
    """SIGKILL during epoch 2 of 3, restart with resume: same steps, lr and weights as an uninterrupted run."""
    settings = dict(epochs=3, num_workers=1, save_interval=1)
    straight = tmp_path / "straight"
    run_bundle([TRAIN], tiny_pretrain_overrides(straight, cache, **settings))

    broken = tmp_path / "broken"
    kill = tmp_path / "kill_after_iteration_3.yaml"
    kill.write_text(KILL_AFTER_ITERATION_3)
    killed = run_bundle([TRAIN, str(kill)], tiny_pretrain_overrides(broken, cache, **settings), check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [p.name for p in (broken / "models").glob("checkpoint_*.pt")] == ["checkpoint_iteration=2.pt"]

    result = run_bundle([TRAIN], tiny_pretrain_overrides(broken, cache, resume=True, **settings))
    assert "resumed from" in result.stdout + result.stderr
    a, b = _final_checkpoint(straight / "models"), _final_checkpoint(broken / "models")
    assert a["trainer"]["iteration"] == b["trainer"]["iteration"] == 6
    assert a["lr_scheduler"]["last_epoch"] == b["lr_scheduler"]["last_epoch"] == 6
    assert a["lr_scheduler"]["_last_lr"] == pytest.approx(b["lr_scheduler"]["_last_lr"])
    steps = {s["step"].item() for s in b["optimizer"]["state"].values()}
    assert steps == {6.0}
    for key, value in a["network"].items():
        torch.testing.assert_close(b["network"][key], value, atol=1e-6, rtol=0, msg=key)
    history = json.loads((broken / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


# As KILL_AFTER_ITERATION_3 with the SIGTERM of a queue's time limit or ``docker stop``.
TERMINATE_AFTER_ITERATION_3 = KILL_AFTER_ITERATION_3.replace("SIGKILL", "SIGTERM")


def test_a_terminated_run_saves_its_last_epoch_and_resumes_like_an_uninterrupted_one(trained, tmp_path,
                                                                                       cache) -> None:
    """SIGTERM during epoch 2 wrote no checkpoint (the first was due at epoch 10, ``save_interval``) and ended with
    a traceback of ``SystemExit: 143``: epoch 1 is saved at the stop, the run ends with one line and exit status
    143, and the resume ends where the uninterrupted ``trained`` run did."""
    straight, _ = trained
    stop = tmp_path / "terminate_after_iteration_3.yaml"
    stop.write_text(TERMINATE_AFTER_ITERATION_3)
    stopped = run_bundle([TRAIN, str(stop)], tiny_pretrain_overrides(tmp_path, cache), check=False)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    checkpoint = tmp_path / "models" / "checkpoint_iteration=2.pt"
    assert [p.name for p in (tmp_path / "models").glob("checkpoint_*.pt")] == [checkpoint.name]
    assert "Traceback" not in stopped.stdout + stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1].split("\r")[-1].strip()  # after the progress bar's last redraw
    assert last == (f"training stopped by SIGTERM at epoch 2, iteration 3: continue from {str(checkpoint)!r} "
                    "(epoch 1, iteration 2) with --resume true")
    result = run_bundle([TRAIN], tiny_pretrain_overrides(tmp_path, cache, resume=True))
    assert f"resumed from {checkpoint} at epoch 1, iteration 2" in result.stdout + result.stderr
    a, b = _final_checkpoint(straight / "models"), _final_checkpoint(tmp_path / "models")
    assert a["trainer"]["iteration"] == b["trainer"]["iteration"] == 4
    assert a["lr_scheduler"]["last_epoch"] == b["lr_scheduler"]["last_epoch"] == 4
    assert {s["step"].item() for s in b["optimizer"]["state"].values()} == {4.0}
    for key, value in a["network"].items():
        torch.testing.assert_close(b["network"][key], value, atol=1e-6, rtol=0, msg=key)
    history = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert history == json.loads((straight / "eval" / "metrics.json").read_text())


def test_trains_from_a_prepared_corpus_cache(tmp_path, cache) -> None:
    from monai_ext.data.corpus import CorpusOptions, prepare_corpus
    from monai_ext.data.folders import pretrain_datalists
    from monai_ext.data.synthetic import SimulatorConfig, generate_dataset

    generate_dataset(tmp_path / "root" / "synthetic", 20, seed=3, config=SimulatorConfig(size=96, screen_capture=True))
    report = prepare_corpus(tmp_path / "root", tmp_path / "corpus", CorpusOptions(size=64))
    # the cache of issue #17's ingestion: de-annotated on the colour screens by default
    assert report["settings"]["deannotate"] and report["datasets"]["synthetic"]["frames_with_annotation"] > 0
    result = run_bundle([TRAIN], tiny_pretrain_overrides(tmp_path, cache, epochs=1, dataset_dir=str(tmp_path / "corpus")))
    log = result.stdout + result.stderr
    lists = pretrain_datalists(tmp_path / "corpus", cache, val_fraction=0.25, seed=42)  # the bundle's split
    assert report["kept"] == len(lists["train"]) + len(lists["validation"])
    assert f"pretraining data from {tmp_path / 'corpus'}: {len(lists['train'])} train, {len(lists['validation'])} " \
           "validation images" in log
    assert (tmp_path / "models" / "model.pt").is_file()


def test_resuming_a_monitored_run_keeps_its_best_model_and_history(tmp_path, cache) -> None:
    """With the representation monitor on, the initial weights are validated at the start as a baseline; a resumed
    run must not: that validation ran before the checkpoint was restored, published the initial weights as the best
    model and cut metrics.json down to its epoch-0 entry."""
    overrides = tiny_pretrain_overrides(tmp_path, cache, epochs=1, monitor_interval=1, monitor_per_class=6)
    run_bundle([TRAIN], overrides)
    best, history = (tmp_path / "models" / "model.pt").read_bytes(), (tmp_path / "eval" / "metrics.json").read_text()
    assert [h["epoch"] for h in json.loads(history)] == [0, 1]
    result = run_bundle([TRAIN], {**overrides, "resume": True})  # the finished run: nothing left to train
    assert "resumed from" in result.stdout + result.stderr
    assert "is at epoch 1, --epochs is 1: nothing to train; raise --epochs to continue" in result.stdout + result.stderr
    assert (tmp_path / "models" / "model.pt").read_bytes() == best
    assert (tmp_path / "eval" / "metrics.json").read_text() == history
    # extended by an epoch: the monitor's scores go on from the checkpoint's (they restarted empty)
    scores = json.loads((tmp_path / "eval" / "representation.json").read_text())
    log = run_bundle([TRAIN], {**overrides, "resume": True, "epochs": 2})
    extended = json.loads((tmp_path / "eval" / "representation.json").read_text())
    assert [h["epoch"] for h in extended] == [0, 1, 2] and extended[:2] == scores
    # the epoch's log line shows this check's scores: it was printed before the check, with the previous one's
    lines = (log.stdout + log.stderr).splitlines()
    check = next(i for i, line in enumerate(lines) if "epoch 2 representation:" in line)
    printed = next(i for i, line in enumerate(lines) if "Epoch[2] Metrics" in line)
    assert check < printed
    assert f"monitor_knn_accuracy: {extended[2]['knn_accuracy']:.4f}" in lines[printed]


def test_the_last_epoch_is_validated_and_monitored_whatever_the_intervals(tmp_path, cache) -> None:
    """--epochs 3 --val_interval 2 --monitor_interval 2 validated and monitored epochs [0, 2]: the final weights were
    never scored, so model.pt could not be them."""
    run_bundle([TRAIN], tiny_pretrain_overrides(tmp_path, cache, epochs=3, val_interval=2, monitor_interval=2,
                                                monitor_per_class=6))
    assert [h["epoch"] for h in json.loads((tmp_path / "eval" / "metrics.json").read_text())] == [0, 2, 3]
    assert [h["epoch"] for h in json.loads((tmp_path / "eval" / "representation.json").read_text())] == [0, 2, 3]
