"""Settings as they arrive from YAML or from a command line."""

from __future__ import annotations

from typing import Any

#: What a setting left empty arrives as from a ``monai.bundle run`` command line: fire passes ``--x null`` and
#: ``--x none`` on as text (only ``None`` becomes Python's None), so the YAML word and its command-line spelling agree.
UNSET_WORDS = ("", "none", "null")


def is_unset(value: Any) -> bool:
    """Whether an optional setting (a file, a folder, a digest) is left empty: None, or one of :data:`UNSET_WORDS`
    in any case."""
    return value is None or (isinstance(value, str) and value.strip().lower() in UNSET_WORDS)
