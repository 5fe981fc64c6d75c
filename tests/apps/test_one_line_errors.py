"""A user's mistake under ``python -m monai.bundle run`` ends in one line naming the bundle and exit code 2; other
errors, and every error with MONAI_EXT_TRACEBACK=1, keep their traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from monai_ext.apps import one_line_errors
from monai_ext.io.checkpoints import CheckpointError
from tests.bundles.helpers import REPO, bundle_command


@pytest.mark.parametrize("argv, name", [
    (["run", "--config_file", "bundles/usf_mae_segment/configs/train.yaml"], "usf_mae_segment"),
    (["run", "--config_file=['bundles/usf_mae_classify/configs/train.yaml','x/evaluate.yaml']"], "usf_mae_classify"),
    (["run", "--config_file", '["/opt/b/usf_mae_pretrain/configs/train.json"]'], "usf_mae_pretrain"),
    (["run", "--epochs", "2"], "monai.bundle run"),
])
def test_bundle_name_comes_from_the_first_config_file(argv: list[str], name: str) -> None:
    assert one_line_errors.bundle_name(argv) == name


def test_the_hook_is_installed_only_under_python_m_monai_bundle() -> None:
    assert one_line_errors.running_monai_bundle("/venv/lib/python3.11/site-packages/monai/bundle/__main__.py")
    assert not one_line_errors.running_monai_bundle(sys.argv[0])  # pytest: in-process bundle runs keep tracebacks
    assert sys.excepthook is not one_line_errors.report_user_error


def wrapped(error: BaseException) -> RuntimeError:
    """``error`` inside two RuntimeErrors, as MONAI's config evaluation raises it."""
    try:
        try:
            raise error
        except BaseException as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression") from inner
    except RuntimeError as middle:
        try:
            raise RuntimeError("Failed to instantiate component") from middle
        except RuntimeError as outer:
            return outer


@pytest.mark.parametrize("error, one_line", [
    (ValueError("epochs must be at least 1,\n got 0"), "epochs must be at least 1, got 0"),
    (CheckpointError("checkpoint 'x.pt' has SHA-256 'ab', expected 'cd'"), "checkpoint 'x.pt' has SHA-256"),
    (FileNotFoundError("no such folder: '/data/BUSBRA'"), "no such folder: '/data/BUSBRA'"),
    (KeyError("a bug, not a user's mistake"), None),
])
def test_user_errors_are_one_line_and_others_keep_the_traceback(error, one_line, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["monai/bundle/__main__.py", "run", "--config_file", "b/usf_mae_x/configs/t.yaml"])
    monkeypatch.setattr(one_line_errors, "_EXIT_CODE", [])
    monkeypatch.delenv("MONAI_EXT_TRACEBACK", raising=False)
    outer = wrapped(error)
    one_line_errors.report_user_error(RuntimeError, outer, outer.__traceback__)
    err = capsys.readouterr().err
    if one_line is None:
        assert "Traceback" in err and "a bug" in err and one_line_errors._EXIT_CODE == []
    else:
        assert err.startswith(f"usf_mae_x: {one_line}") and err.count("\n") == 1
        assert err.endswith("(MONAI_EXT_TRACEBACK=1 shows where)\n") and one_line_errors._EXIT_CODE == [2]


@pytest.mark.parametrize("traceback", [False, True])
def test_bundle_command_line_mistake_exits_2_with_one_line(tmp_path, traceback: bool) -> None:
    """The real thing: inference asked for a checkpoint that does not exist."""
    cmd = bundle_command("run", ["bundles/usf_mae_segment/configs/inference.yaml"],
                         {"ckpt_path": str(tmp_path / "missing.pt"), "output_dir": str(tmp_path / "out"),
                          "input_files": [str(tmp_path / "scan.png")]})
    env = {**os.environ, "MONAI_EXT_TRACEBACK": "1"} if traceback else {
        k: v for k, v in os.environ.items() if k != "MONAI_EXT_TRACEBACK"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in result.stderr.splitlines() if line.startswith("usf_mae_segment: ")]
    if traceback:
        assert result.returncode == 1 and "Traceback" in result.stderr and not lines
    else:
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and len(lines) == 1 and "missing.pt" in lines[0], result.stderr[-3000:]
