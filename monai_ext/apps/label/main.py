"""MONAI Label's entry file: ``monailabel start_server --app <folder with this main.py>`` loads the app class here.

``scripts/run_label_server.sh`` copies this file into a working app folder, because MONAI Label writes ``logs/``,
``model/`` and ``lib/`` beside it.
"""

from __future__ import annotations

from monai_ext.apps.label.app import UltrasoundClassifierApp

__all__ = ["UltrasoundClassifierApp"]
