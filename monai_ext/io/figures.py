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
    """Save a matplotlib figure as PNG atomically and close it."""
    from io import BytesIO

    import matplotlib.pyplot as plt

    buffer = BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
