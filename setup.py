"""Packaging beyond ``pyproject.toml``: the MONAI bundles ship inside the package as ``monai_ext/bundles``.

``pyproject.toml`` holds the project's metadata. It cannot both find the packages automatically and map a folder
that lies outside them (``bundles/``, kept at the repository root so ``python -m monai.bundle run --config_file
bundles/...`` works from a checkout) into the package, so this file adds that one mapping. Installed, the bundles
are found by :func:`monai_ext.apps.bundle_support.bundle_path`.
"""

from setuptools import find_packages, setup

# What a bundle is made of; models/, eval/ and cache/ hold a user's runs in a checkout and are never shipped.
BUNDLE_FILES = ["meta_schema.json", "*/LICENSE", "*/configs/*", "*/docs/*"]

setup(
    packages=find_packages(include=["monai_ext", "monai_ext.*"]) + ["monai_ext.bundles"],
    package_dir={"monai_ext.bundles": "bundles"},
    package_data={"monai_ext.bundles": BUNDLE_FILES},
)
