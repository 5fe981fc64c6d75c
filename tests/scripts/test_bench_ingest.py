"""scripts/bench_ingest.py: every rate the best of --repeats passes (the whole prepare-corpus run into a fresh cache
each time); bad counts are one line and exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.scripts.helpers import refusal

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bench_ingest.py"


def test_every_rate_is_the_best_of_the_repeats_each_whole_run_into_a_fresh_cache(monkeypatch, capsys):
    """The whole prepare-corpus run, the cached reader and the source-PNG baseline were timed once each, whatever
    --repeats said; a second run into the same cache would have resumed it with nothing left to do."""
    import monai_ext.data.corpus as corpus

    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import bench_ingest

    repeats, outs = [], []
    timed = bench_ingest.per_second

    def recording(fn, items, repeats_=1, *rest, **kw):
        repeats.append(repeats_)
        return timed(fn, items, repeats_, *rest, **kw)

    real_prepare = corpus.prepare_corpus

    def prepare(root, out, *args, **kwargs):
        outs.append(Path(out))
        return real_prepare(root, out, *args, **kwargs)

    monkeypatch.setattr(bench_ingest, "per_second", recording)
    monkeypatch.setattr(corpus, "prepare_corpus", prepare)
    monkeypatch.setattr(sys, "argv", ["bench_ingest.py", "--images", "2", "--size", "32", "--repeats", "2",
                                      "--chunk_frames", "2", "--suspect_files", "0"])
    bench_ingest.main()
    out = capsys.readouterr().out
    assert repeats == [2] * 6, repeats  # decode, ingest on and off, whole run, cached reader, source PNG
    assert len(outs) == 2 and len(set(outs)) == 2, outs
    assert "whole prepare-corpus run:" in out and "cached / PNG = " in out, out
    # every line's figure is against a same-run baseline, and the cached reads are said to be of the page cache
    assert "whole / decode = " in out.split("whole prepare-corpus run:")[1].splitlines()[0], out
    assert "hot page cache" in out.split("cached reader")[1].splitlines()[0], out
    assert "suspect chunk" not in out  # 0 leaves the spawned processes out


@pytest.mark.parametrize("option, value", [("--images", "0"), ("--repeats", "0"), ("--chunk_frames", "0"),
                                           ("--size", "-1"), ("--images", "many"),
                                           ("--suspect_files", "-1")])
def test_a_count_below_one_is_one_line_and_exit_code_2(option, value, monkeypatch, capsys):
    stderr = refusal("bench_ingest", [option, value], monkeypatch, capsys)
    assert f"argument {option}: must be" in stderr and "Traceback" not in stderr, stderr
