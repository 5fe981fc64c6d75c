"""MONAI Label integration: serve the classification bundle's model to annotators and fine-tune it on their labels.

``bundle_model`` and ``datalist`` need only the main environment; ``infer``, ``train``, ``app`` and ``main`` import
MONAI Label and run in the separate ``.venv-label`` environment (see ``requirements-label.txt``).
"""

from __future__ import annotations
