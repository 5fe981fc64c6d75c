"""A datalist part the bundle is about to use but that has no items is refused naming the part and its use, from the
bundles' own configs (MONAI's ``ConfigParser``), instead of an error from inside the dataset or the sampler."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from tests.bundles.helpers import REPO

ITEM = {"image": "a.png", "label": 0}


def parsed(bundle: str, overlay: str | None, split: dict, key: str):
    """``key`` of ``bundle``'s train config (plus ``overlay``) resolved with ``split`` as the datalist."""
    parser = ConfigParser()
    configs = [REPO / "bundles" / bundle / "configs" / "train.yaml"]
    if overlay:
        configs.append(REPO / "bundles" / bundle / "configs" / overlay)
    parser.read_config([str(c) for c in configs])
    parser["split"] = split
    return parser.get_parsed_content(key, instantiate=False)


@pytest.mark.parametrize("bundle", ["usf_mae_classify", "usf_mae_segment"])
@pytest.mark.parametrize("overlay, key, empty, message", [
    (None, "train#dataset#data", "train", "no 'train' items to train on"),
    (None, "validate#datalist", "validation", "no 'validation' items to validate on"),
    ("evaluate.yaml", "validate#datalist", "test", "no 'test' items to evaluate"),
])
def test_an_empty_part_is_refused_naming_it_and_its_use(bundle, overlay, key, empty, message) -> None:
    full = {"class_names": ["a", "b"], "train": [ITEM], "validation": [ITEM], "test": [ITEM]}
    assert parsed(bundle, overlay, full, key) == [ITEM]
    with pytest.raises(RuntimeError) as raised:  # ConfigParser wraps what an expression raises
        parsed(bundle, overlay, {**full, empty: []}, key)
    cause = raised.value.__cause__
    assert isinstance(cause, ValueError) and message in str(cause)
