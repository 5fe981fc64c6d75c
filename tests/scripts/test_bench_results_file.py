"""scripts/bench_results_file.py: both rules timed on the same batch in one run, the old one as it was (a write every
50 images); a bad count is one line and exit code 2."""

from __future__ import annotations

import re
import sys

import pytest

from tests.scripts.helpers import refusal, script_module


def test_both_rules_are_timed_on_the_same_batch_and_their_ratio_printed(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_results_file.py", "--images", "1000"])
    script_module("bench_results_file").main()
    lines = capsys.readouterr().out.splitlines()
    writes = [int(re.search(r": +(\d+) writes", line).group(1)) for line in lines[:2]]
    assert writes[0] == 1 + 1000 // 50 + 1  # the old rule: the first write, one every 50 images, the last
    assert writes[1] < writes[0] and lines[2].startswith("before / now = ")


def test_the_old_rule_is_restored_after_the_measurement() -> None:
    from monai_ext.engines import inference

    bench = script_module("bench_results_file")
    real = inference.save_due, inference._write_results
    bench.simulated_batch(60, bench.every_fifty)
    assert (inference.save_due, inference._write_results) == real


@pytest.mark.parametrize("value", ["0", "49", "many"])
def test_a_bad_count_is_one_line_and_exit_code_2(value, monkeypatch, capsys) -> None:
    stderr = refusal("bench_results_file", ["--images", value], monkeypatch, capsys)
    assert "--images" in stderr and len(stderr.strip().splitlines()) == 2  # argparse's usage line and the reason
