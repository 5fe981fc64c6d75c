"""Both bundles under torchrun with two CPU processes (gloo) through their multi_gpu_train.yaml overlays."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from monai_ext.networks.checkpoints import read_checkpoint
from tests.bundles.helpers import (
    REPO,
    run_bundle,
    tiny_classify_overrides,
    tiny_pretrain_overrides,
    tiny_segment_overrides,
)
from tests.launch import run_torchrun

pytestmark = pytest.mark.slow


def torchrun_bundle(bundle: str, overrides: dict[str, object], processes: int = 2, expect_rc: int = 0,
                    fresh: bool = False) -> subprocess.CompletedProcess:
    """``torchrun -m monai.bundle run`` of the bundle's train.yaml and multi_gpu_train.yaml; ``fresh``: the user's
    own command, fresh interpreters for the launcher and every rank (``tests.launch.run_torchrun``)."""
    configs = json.dumps([f"bundles/{bundle}/configs/train.yaml", f"bundles/{bundle}/configs/multi_gpu_train.yaml"])
    target = ["-m", "monai.bundle", "run", "--config_file", configs]
    for key, value in overrides.items():
        target += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = run_torchrun(target, processes=processes, cwd=REPO, env=env, timeout=600, fresh=fresh)
    assert result.returncode == expect_rc, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def test_a_torchrun_world_of_one_process_runs_the_overlay(tmp_path) -> None:
    """A 1-GPU machine (or an 8-GPU run resumed on one) with the same torchrun command: the group was not started
    for a world of one, and the overlay's DistributedSampler failed with 'Default process group has not been
    initialized'. ``--device cpu`` as the bundles tell a user to type it (text on the command line): the DDP wrapper
    failed on every rank with "'str' object has no attribute 'type'"."""
    overrides = tiny_classify_overrides(tmp_path, tmp_path / "cache", epochs=1, device="cpu")
    torchrun_bundle("usf_mae_classify", overrides, processes=1)
    history = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1] and history[0]["n"] == 4


TINY_OVERRIDES = {"usf_mae_pretrain": tiny_pretrain_overrides, "usf_mae_classify": tiny_classify_overrides,
                  "usf_mae_segment": tiny_segment_overrides}


@pytest.mark.parametrize("bundle", TINY_OVERRIDES)
def test_the_overlay_without_torchrun_is_refused_in_one_line(bundle, tmp_path) -> None:
    """``python -m monai.bundle run`` of train.yaml + multi_gpu_train.yaml, without torchrun, ended in an 86-line
    traceback from the DistributedSampler ("Default process group has not been initialized")."""
    configs = [f"bundles/{bundle}/configs/train.yaml", f"bundles/{bundle}/configs/multi_gpu_train.yaml"]
    result = run_bundle(configs, TINY_OVERRIDES[bundle](tmp_path, tmp_path / "cache"), check=False, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"{bundle}: multi_gpu_train.yaml runs under torchrun (torchrun --nproc_per_node=N -m monai.bundle run ...); "
        "for one process use train.yaml alone")
    assert not (tmp_path / "models").exists()  # nothing trained or written


def test_a_users_mistake_under_torchrun_is_one_line_on_every_rank(tmp_path) -> None:
    """torch's excepthook diverts stderr into a buffer while the hook runs; the one-line hook leaves with os._exit,
    so under torchrun the line was lost: exit code 2 and no reason. Each rank that fails says it in that one line."""
    missing = tmp_path / "no_such_folder"
    overrides = {**tiny_pretrain_overrides(tmp_path, tmp_path / "cache", num_synthetic=32), "dataset_dir": str(missing)}
    result = torchrun_bundle("usf_mae_pretrain", overrides, expect_rc=1, fresh=True)
    # torchrun stops the other ranks once one fails: a rank still parsing its config may be stopped before its line
    worker_lines = [line for line in result.stderr.splitlines() if re.match(r"\[rank\d\]: ", line)]
    line = f"usf_mae_pretrain: dataset folder '{missing}' does not exist"
    assert worker_lines and all(text.split(": ", 1)[1].startswith(line) for text in worker_lines), result.stderr[-3000:]
    assert str(REPO / "monai_ext") not in result.stderr  # no worker traceback (torchrun still prints its own)


def test_pretrain_bundle_under_torchrun(tmp_path) -> None:
    overrides = tiny_pretrain_overrides(tmp_path, tmp_path / "cache", num_synthetic=32)
    result = torchrun_bundle("usf_mae_pretrain", overrides, fresh=True)
    history = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    final = read_checkpoint(tmp_path / "models" / "checkpoint_iteration=2.pt")  # 24 train / (8 x 2 ranks) = 1 step
    assert final["trainer"]["iteration"] == 2 and "module." not in next(iter(final["network"]))
    assert result.stdout.count("reconstruction grid written") == 2  # rank 0 only, once per epoch
    output = result.stdout + result.stderr
    # the validator's per-epoch statistics line: rank 0 only (each rank printed it)
    assert output.count("Epoch[1] Metrics") == 1 and output.count("Epoch[2] Metrics") == 1, output[-3000:]


def test_classify_bundle_under_torchrun(tmp_path) -> None:
    result = torchrun_bundle("usf_mae_classify", tiny_classify_overrides(tmp_path, tmp_path / "cache"), fresh=True)
    # train.yaml's finish steps ran after the overlay's teardown: the best-model check, and the summary on rank 0
    assert result.stdout.count("best validation macro-F1:") == 1
    history = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    # The validation metric was computed over both ranks' shards: all 4 validation images of fold 0.
    assert history[-1]["n"] == 4
    assert (tmp_path / "models" / "model.pt").is_file()


def test_classify_run_of_two_processes_resumes_on_three_with_more_epochs(tmp_path) -> None:
    """A node lost: the run saved on 2 ranks (2 batches of 4 an epoch on each) goes on on 3 (1 batch an epoch) after
    its saved epoch, with its metrics history, best model and best report kept."""
    overrides = tiny_classify_overrides(tmp_path, tmp_path / "cache", epochs=1, batch_size=4)
    torchrun_bundle("usf_mae_classify", overrides)
    best, report = (tmp_path / "models" / "model.pt").read_bytes(), (tmp_path / "eval" / "validation_report.json")
    first_report = report.read_text()
    result = torchrun_bundle("usf_mae_classify", {**overrides, "epochs": 3, "resume": True}, processes=3)
    assert "resumed from" in result.stdout + result.stderr
    history = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3] and {h["n"] for h in history} == {4}
    saved = read_checkpoint(tmp_path / "models" / "checkpoint_iteration=2.pt")["trainer"]  # 1 epoch of 2 batches
    assert (saved["epoch_length"], saved["iteration"]) == (2, 2)
    final = read_checkpoint(tmp_path / "models" / "checkpoint_iteration=3.pt")["trainer"]
    assert (final["epoch_length"], final["iteration"]) == (1, 3)  # then epochs 2 and 3 of 1 batch each
    best_f1 = max(h["val_macro_f1"] for h in history)
    assert read_checkpoint(tmp_path / "models" / "model.pt")["val_macro_f1"] == best_f1
    assert json.loads(report.read_text())["macro_f1"] == best_f1
    if history[0]["val_macro_f1"] == best_f1:  # no later epoch beat the first: its files stay as they were
        assert (tmp_path / "models" / "model.pt").read_bytes() == best and report.read_text() == first_report
