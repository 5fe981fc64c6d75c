"""PNG files of arrays and matplotlib figures, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from monai_ext.io.atomic import atomic_write_bytes


def save_png(image: np.ndarray, path: Path) -> None:
    """Save a uint8 (H, W) or (H, W, 3) array as PNG, atomically."""
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it, cropped or grown to what is drawn (``bbox_inches=
    "tight"``: a label or legend reaching past the figure's edge is kept, not cut off)."""
    from io import BytesIO

    import matplotlib.pyplot as plt

    buffer = BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
