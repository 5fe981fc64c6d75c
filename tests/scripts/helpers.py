"""Running a script of ``scripts/`` in the test's own process: its argument checks need no interpreter of their own
(a fresh one costs about 1.5 s of imports per case)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def script_module(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (``scripts/`` is not a package)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "scripts"))


def refusal(name: str, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> str:
    """What ``scripts/<name>.py ARGS`` writes to stderr when it stops with exit code 2 (argparse's refusal); fails
    the test if it ends any other way."""
    module = script_module(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
    with pytest.raises(SystemExit) as stopped:
        module.main()
    assert stopped.value.code == 2
    return capsys.readouterr().err
