"""Per-class label budgets of a split (the label-efficiency curve's data): exact counts, nested, test untouched."""

from __future__ import annotations

from collections import Counter

import pytest

from monai_ext.data.downstream import Split, labels_per_class


def unbalanced_split(patients: bool = False) -> Split:
    """Three classes with 30, 14 and 9 labelled images (train + validation) and a test part."""
    items = [{"image": f"/d/{c}_{i}.png", "label": c, "id": f"{c}_{i}", **({"patient": f"p{c}_{i // 2}"} if patients else {})}
             for c, n in enumerate((30, 14, 9)) for i in range(n)]
    test = [{"image": f"/t/{i}.png", "label": i % 3, "id": f"t{i}"} for i in range(12)]
    return {"train": items[::2], "validation": items[1::2], "test": test}


@pytest.mark.parametrize("count", [2, 5, 9])
@pytest.mark.parametrize("patients", [False, True])
def test_every_class_gets_exactly_count_labels_and_test_is_untouched(count: int, patients: bool) -> None:
    split = unbalanced_split(patients)
    capped = labels_per_class(split, count, 3, seed=3)
    labelled = capped["train"] + capped["validation"]
    assert Counter(it["label"] for it in labelled) == {0: count, 1: count, 2: count}
    assert len({it["id"] for it in labelled}) == len(labelled)  # no image twice
    assert {it["id"] for it in capped["train"]}.isdisjoint(it["id"] for it in capped["validation"])
    assert capped["test"] == split["test"]
    if not patients:  # stratified: every class in both parts (patient groups can make that impossible)
        assert all(Counter(it["label"] for it in capped[p]).keys() == {0, 1, 2} for p in ("train", "validation"))
    else:  # validation patients are not training patients
        assert {it["patient"] for it in capped["train"]}.isdisjoint(it["patient"] for it in capped["validation"])


def test_smaller_budgets_are_subsets_of_larger_ones_and_the_seed_changes_the_draw() -> None:
    split = unbalanced_split()
    ids = {n: {it["id"] for it in labels_per_class(split, n, 3, seed=1)["train"] + labels_per_class(split, n, 3, seed=1)["validation"]}
           for n in (3, 6, 9)}
    assert ids[3] < ids[6] < ids[9]
    other = labels_per_class(split, 6, 3, seed=2)
    assert {it["id"] for it in other["train"] + other["validation"]} != ids[6]


def test_the_total_cap_of_the_protocols_is_not_a_per_class_cap() -> None:
    """Why this function exists: ``max_train`` keeps the proportions, so an unbalanced set is not capped per class."""
    import numpy as np

    from monai_ext.data.downstream import _stratified_subset

    split = unbalanced_split()
    subset = _stratified_subset(split["train"] + split["validation"], 27, np.random.default_rng(0))
    assert Counter(it["label"] for it in subset)[0] > 9


@pytest.mark.parametrize("count, num_classes, message", [
    (10, 3, "class 2 has 9 labelled images"), (1, 3, "at least 2, got 1"), (2.5, 3, "got 2.5"), (True, 3, "got True"),
    (2, 4, "class 3 has 0 labelled images"),  # a class absent from the labelled part (only in test, or nowhere)
    (2, 1, "num_classes must be an integer of at least 2, got 1"),
])
def test_impossible_budgets_are_refused(count: object, num_classes: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        labels_per_class(unbalanced_split(), count, num_classes)  # type: ignore[arg-type]
