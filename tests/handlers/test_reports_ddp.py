"""Evaluation over a split with unreadable files on 2 and 3 ranks (gloo, CPU), unpadded shards of unequal size: the
gathered classification and segmentation reports count each readable image exactly once and every rank lists the
unreadable ones (substitutes would count a neighbour twice, on whichever rank met the bad file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.data.unreadable import BAD, image_folder, with_masks
from tests.launch import run_torchrun

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("ddp_reports_worker.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("processes", [2, 3])
def test_each_readable_image_counts_once_over_uneven_shards(tmp_path, processes: int) -> None:
    items = [{**item, "mask": item["label"], "label": int(str(item["id"])[4:]) % 2 if item["id"] not in BAD else 0}
             for item in with_masks(image_folder(tmp_path, good=8), tmp_path)]
    (tmp_path / "items.json").write_text(json.dumps(items))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = run_torchrun([WORKER, tmp_path / "items.json", tmp_path / "out"], processes=processes, env=env,
                          timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-5000:]
    for r in range(processes):
        reports = json.loads((tmp_path / f"out.rank{r}.json").read_text())
        cls, seg = reports["classification"], reports["segmentation"]
        assert cls["n"] == 8 and [c["support"] for c in cls["per_class"].values()] == [4, 4]
        assert cls["confusion_matrix"] == [[4, 0], [0, 4]]
        assert sorted(e["id"] for e in seg["per_image"]) == [f"case{i}" for i in range(8)]
        assert [e["dice"]["lesion"] for e in seg["per_image"]] == pytest.approx([1.0] * 8)
        assert seg["empty_truth"] == {"lesion": {"images": 0, "predicted": []}}  # gathered with the ids, 8 in all
        for report in (cls, seg):
            assert sorted(Path(s["image"]).name for s in report["skipped"]) == sorted(BAD)
