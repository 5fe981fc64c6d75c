"""Shared fixtures of the figure tests."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest


@pytest.fixture
def keep_figures(monkeypatch) -> Callable[[ModuleType], list]:
    """``keep_figures(module)``: the figures ``module`` saves from then on, drawn and kept open for inspection
    (they are still written)."""

    def patch(module: ModuleType) -> list:
        figures = []
        real_save = module.save_figure

        def keep(fig, path):
            figures.append(fig)
            fig.canvas.draw()
            real_save(fig, path)

        monkeypatch.setattr(module, "save_figure", keep)
        return figures

    return patch
