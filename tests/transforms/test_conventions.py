"""MONAI conventions every transform of the package keeps: a declared ``backend`` (what MONAI's ``Compose`` and
readers of the config rely on to know which array types a transform takes)."""

from __future__ import annotations

import inspect

import pytest
from monai.transforms import Transform
from monai.utils import TransformBackends

import monai_ext.transforms as transforms
from monai_ext.transforms.loading import LoadUltrasoundImage, LoadUltrasoundImaged
from monai_ext.transforms.masks import LoadMask, LoadMaskd

CLASSES = [
    obj for name in transforms.__all__
    if inspect.isclass(obj := getattr(transforms, name)) and issubclass(obj, Transform)
] + [LoadMask, LoadMaskd, LoadUltrasoundImage, LoadUltrasoundImaged]


def test_the_list_holds_every_exported_transform():
    assert len(CLASSES) >= 29


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_backend_is_declared(cls):
    assert cls.backend, f"{cls.__name__} declares no backend"
    assert all(isinstance(b, TransformBackends) for b in cls.backend)
