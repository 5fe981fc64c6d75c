"""MONAI Label integration: serve the classification bundle's model to annotators.

``bundle_model`` needs only the main environment; ``infer``, ``app`` and ``main`` import MONAI Label and run in the
separate ``.venv-label`` environment (see ``requirements-label.txt``).
"""
