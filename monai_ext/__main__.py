"""``python -m monai_ext``: see :mod:`monai_ext.cli`."""

from __future__ import annotations

from monai_ext.cli import main

main()
