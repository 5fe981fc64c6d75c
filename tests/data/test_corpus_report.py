"""``report.png``'s per-dataset bars: one readable row per dataset however many there are, read from the top in
name order, frames ticked as whole numbers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import monai_ext.data.corpus as corpus
import monai_ext.io.figures as figures


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures saved, drawn and kept open for inspection (they are still written); no before/after pair is read
    (the bars, not the frames, are under test)."""
    figures_drawn = []
    real_save = figures.save_figure

    def keep(fig, path):
        fig.canvas.draw()
        figures_drawn.append(fig)
        real_save(fig, path)

    monkeypatch.setattr(figures, "save_figure", keep)
    monkeypatch.setattr(corpus, "before_after_pairs", lambda *args: [])
    return figures_drawn


def test_many_datasets_get_separate_rows_listed_from_the_top(tmp_path, drawn) -> None:
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


@pytest.mark.parametrize("counts", [{"a": (3, 2)}, {"a": (1, 1)}, {"a": (2, 0), "b": (3, 3)}, {"a": (240, 200)}])
def test_frame_counts_are_ticked_as_whole_numbers(tmp_path, drawn, counts: dict[str, tuple[int, int]]) -> None:
    """A few frames were ticked at 0.5, 1.5, ...: half a frame."""
    report = {"datasets": {n: {"frames": f, "kept": k} for n, (f, k) in counts.items()},
              "frames": sum(f for f, _ in counts.values()), "kept": sum(k for _, k in counts.values())}
    corpus.write_report_png(tmp_path, tmp_path, [], report, SimpleNamespace(deannotate=True, doppler="drop"))
    ticks = drawn[0].axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
