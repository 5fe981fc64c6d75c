"""``report.png``'s per-dataset bars: one readable row per dataset however many there are, read from the top in
name order."""

from __future__ import annotations

from types import SimpleNamespace

import monai_ext.data.corpus as corpus
import monai_ext.io.figures as figures


def test_many_datasets_get_separate_rows_listed_from_the_top(tmp_path, monkeypatch) -> None:
    drawn = []
    real_save = figures.save_figure

    def keep(fig, path):
        fig.canvas.draw()
        drawn.append(fig)
        real_save(fig, path)

    monkeypatch.setattr(figures, "save_figure", keep)
    monkeypatch.setattr(corpus, "before_after_pairs", lambda *args: [])  # the bars, not the frames, are under test
    names = [f"dataset_{i:02d}_breast_ultrasound" for i in range(46)]
    report = {"datasets": {n: {"frames": 100 + i, "kept": 80 + i} for i, n in enumerate(names)},
              "frames": 5635, "kept": 4715}
    corpus.write_report_png(tmp_path, tmp_path, [], report, SimpleNamespace(deannotate=True, doppler="drop"))
    assert (tmp_path / "report.png").stat().st_size > 0
    bars = drawn[0].axes[0]
    labels = [t for t in bars.get_yticklabels() if t.get_text()]
    assert [t.get_text() for t in labels] == names
    boxes = [t.get_window_extent() for t in labels]
    assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))  # 46 names once overlapped
    assert boxes[0].y0 > boxes[-1].y0  # the first name at the top (barh drew it at the bottom: Z to A)
