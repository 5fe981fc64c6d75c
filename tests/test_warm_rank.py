"""torchrun ranks forked from the warm interpreter (``tests/warm_rank.py``) see what fresh torchrun ranks see."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests import test_warm_python
from tests.launch import run_torchrun

own_warm_interpreter = test_warm_python.own_warm_interpreter  # the fixture: a warm interpreter of this module's

# Each rank writes what it sees of its start-up to OUT/rank<r>.txt, then ends as its first argument says (on rank 1
# only for the failures, as one failing rank does, after rank 0 has ended).
PROBE = textwrap.dedent("""
    import atexit, os, signal, sys, threading
    from pathlib import Path
    import numpy, torch
    out = Path(os.environ["PROBE_OUT"]) / f"rank{os.environ['RANK']}.txt"
    lines = [
        f"argv {os.path.basename(sys.argv[0])} {sys.argv[1:]}",
        f"main {__name__}",
        f"world {os.environ['WORLD_SIZE']} local {os.environ['LOCAL_RANK']}",
        f"threads {torch.get_num_threads()}",
        f"monai_ext {'monai_ext' in sys.modules}",
        f"path0 {Path(sys.path[0] or os.getcwd()).resolve() == Path(os.environ['PROBE_FIRST']).resolve()}",
        f"cwd importable {any(Path(p or os.getcwd()).resolve() == Path.cwd().resolve() for p in sys.path)}",
        f"sigterm default {signal.getsignal(signal.SIGTERM) is signal.SIG_DFL}",
    ]
    out.write_text("\\n".join(lines) + "\\n")
    with open(out.with_suffix(".random"), "w") as f:
        print(numpy.random.rand(), torch.rand(1).item(), file=f)
    atexit.register(lambda: open(out, "a").write("at exit\\n"))
    threading.Thread(target=lambda: open(out.with_suffix(".thread"), "w").write("joined")).start()
    how = sys.argv[1]
    if os.environ["RANK"] == "1" and how != "end":  # fails once rank 0 has ended: torchrun then stops no rank
        import time
        rank0 = out.with_name("rank0.txt")
        for _ in range(600):
            if rank0.exists() and "at exit" in rank0.read_text():
                break
            time.sleep(0.1)
    if os.environ["RANK"] == "1" and how == "raise":
        raise RuntimeError("boom on rank 1")
    if os.environ["RANK"] == "1" and how == "exit":
        sys.exit(3)
""")


@pytest.fixture
def probe(request, tmp_path) -> dict[str, str]:
    """The probe as a module of PYTHONPATH and as a script, and the environment of the runs: no OMP_NUM_THREADS,
    which torchrun then sets to 1 for each rank (the warm interpreter has torch on two threads)."""
    request.getfixturevalue("own_warm_interpreter")
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "rank_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k not in ("NOT_GIVEN", "OMP_NUM_THREADS")}
    return {**env, "PYTHONPATH": str(tmp_path / "modules")}


def ran(tmp_path: Path, name: str, target: list[str], env: dict[str, str], fresh: bool, first: Path):
    out = tmp_path / name
    out.mkdir()
    result = run_torchrun(target, processes=2, env={**env, "PROBE_OUT": str(out), "PROBE_FIRST": str(first)},
                          timeout=120, cwd=tmp_path, fresh=fresh)
    seen = {r: (out / f"rank{r}.txt").read_text() for r in range(2)}
    draws = {r: (out / f"rank{r}.random").read_text() for r in range(2)}
    threads = {r: (out / f"rank{r}.thread").read_text() for r in range(2)}
    return result, seen, draws, threads


@pytest.mark.parametrize("how, form", [("raise", "script"), ("exit", "module")])  # rank 0 ends as "end" would
def test_a_forked_rank_sees_what_a_fresh_rank_sees(how, form, tmp_path, probe) -> None:
    script = tmp_path / "modules" / "rank_probe.py"
    target = ["-m", "rank_probe", how] if form == "module" else [str(script), how]
    first = tmp_path if form == "module" else script.parent  # -m puts the working folder first, a script its own
    expected = ran(tmp_path, "fresh", target, probe, True, first)
    warm = ran(tmp_path, "warm", target, probe, False, first)
    assert warm[0].returncode == expected[0].returncode == 1
    assert warm[1] == expected[1]  # what each rank saw, and its exit handlers
    assert all("at exit" in text and "threads 1" in text and "monai_ext False" in text and "path0 True" in text
               and "sigterm default True" in text for text in warm[1].values())
    # python SCRIPT has the script's folder on sys.path, not the working folder; -m the working folder
    assert all(f"cwd importable {form == 'module'}" in text for text in warm[1].values())
    assert warm[3] == expected[3] == {0: "joined", 1: "joined"}
    assert warm[2][0] != warm[2][1]  # fresh random states on every rank, as fresh interpreters have
    # the launcher names the failed rank, and a raise is printed as Python prints it
    assert "rank      : 1" in warm[0].stderr and "rank      : 1" in expected[0].stderr
    if how == "raise":
        assert "RuntimeError: boom on rank 1" in warm[0].stderr and "RuntimeError: boom on rank 1" in expected[0].stderr
    if how == "exit":
        assert "exitcode  : 3" in warm[0].stderr and "exitcode  : 3" in expected[0].stderr
