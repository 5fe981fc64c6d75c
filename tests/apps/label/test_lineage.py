"""Which model the app serves after a restart: a published fine-tune only for the checkpoint and studies it came
from, and one of another lineage kept, not overwritten (no MONAI Label needed)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from monai_ext.apps.label.lineage import (
    Lineage,
    explain_unserved,
    lineage_file,
    previous_file,
    publish,
    serves_published,
)


@pytest.fixture
def app(tmp_path) -> dict[str, Path]:
    (tmp_path / "breast.pt").write_bytes(b"breast base model")
    (tmp_path / "thyroid.pt").write_bytes(b"thyroid base model")
    (tmp_path / "run.pt").write_bytes(b"fine-tuned model")
    for name in ("studies_a", "studies_b"):
        (tmp_path / name).mkdir()
    return {"root": tmp_path, "published": tmp_path / "app" / "model" / "usf_mae_classifier.pt"}


def _lineage(app, checkpoint: str, studies: str) -> Lineage:
    return Lineage.of(app["root"] / checkpoint, str(app["root"] / studies))


def test_a_fine_tune_is_served_by_the_app_it_came_from_and_survives_a_restart(app) -> None:
    lineage = _lineage(app, "breast.pt", "studies_a")
    assert not serves_published(app["published"], lineage)  # nothing published yet: the checkpoint
    assert publish(app["root"] / "run.pt", app["published"], lineage) is None
    assert app["published"].read_bytes() == b"fine-tuned model"
    restarted = _lineage(app, "breast.pt", "studies_a")  # same conf, a new process
    assert serves_published(app["published"], restarted)
    shutil.copy(app["root"] / "breast.pt", app["root"] / "moved.pt")  # the same content elsewhere: the same base
    assert serves_published(app["published"], _lineage(app, "moved.pt", "studies_a"))


@pytest.mark.parametrize("checkpoint, studies", [("thyroid.pt", "studies_a"), ("breast.pt", "studies_b")])
def test_another_checkpoint_or_studies_folder_serves_its_checkpoint_and_says_why(app, caplog, checkpoint,
                                                                                  studies) -> None:
    """A team fine-tuned on study A, then starts the app on study B or from a new base model: it served the old
    fine-tune, with the old classes, and the next training started from it."""
    publish(app["root"] / "run.pt", app["published"], _lineage(app, "breast.pt", "studies_a"))
    other = _lineage(app, checkpoint, studies)
    assert not serves_published(app["published"], other)
    with caplog.at_level(logging.WARNING):
        explain_unserved(app["published"], other)
    assert "was fine-tuned from" in caplog.text and "breast.pt" in caplog.text and "serving the checkpoint" in caplog.text


def test_a_checkpoint_rewritten_in_place_is_another_base(app) -> None:
    publish(app["root"] / "run.pt", app["published"], _lineage(app, "breast.pt", "studies_a"))
    (app["root"] / "breast.pt").write_bytes(b"breast base model, retrained")
    assert not serves_published(app["published"], _lineage(app, "breast.pt", "studies_a"))


@pytest.mark.parametrize("record", [None, "{broken", "[]"])
def test_a_publication_without_a_readable_record_is_not_served(app, caplog, record) -> None:
    """Models published before records existed, or a damaged record: kept, not served, and the log says how to
    serve it."""
    app["published"].parent.mkdir(parents=True)
    app["published"].write_bytes(b"old fine-tune")
    if record is not None:
        lineage_file(app["published"]).write_text(record)
    lineage = _lineage(app, "breast.pt", "studies_a")
    assert not serves_published(app["published"], lineage)
    with caplog.at_level(logging.WARNING):
        explain_unserved(app["published"], lineage)
    assert "has no lineage record" in caplog.text and "--conf checkpoint <the copy>" in caplog.text


def test_training_keeps_a_model_of_another_lineage_before_publishing(app) -> None:
    breast, thyroid = _lineage(app, "breast.pt", "studies_a"), _lineage(app, "thyroid.pt", "studies_a")
    publish(app["root"] / "run.pt", app["published"], breast)
    (app["root"] / "run2.pt").write_bytes(b"thyroid fine-tune")
    kept = publish(app["root"] / "run2.pt", app["published"], thyroid)
    assert kept is not None and kept.read_bytes() == b"fine-tuned model"
    assert json.loads(lineage_file(kept).read_text())["checkpoint"].endswith("breast.pt")
    assert app["published"].read_bytes() == b"thyroid fine-tune" and serves_published(app["published"], thyroid)
    (app["root"] / "run3.pt").write_bytes(b"thyroid fine-tune, more labels")
    assert publish(app["root"] / "run3.pt", app["published"], thyroid) is None  # its own lineage: replaced
    assert len(list(app["published"].parent.glob("*.superseded-*.pt"))) == 1


def test_the_published_file_configured_as_the_checkpoint_is_trained_in_place(app, caplog) -> None:
    """Started with its own published model as --conf checkpoint: served, trained in place, restart after restart,
    with no warning that it came "from X, not from X" and no copy of the whole model left per training."""
    app["published"].parent.mkdir(parents=True)
    app["published"].write_bytes(b"old fine-tune")  # published by an earlier version: no record
    for round_ in range(3):
        lineage = Lineage.of(app["published"], str(app["root"] / "studies_a"))  # a restart
        assert serves_published(app["published"], lineage)
        with caplog.at_level(logging.WARNING):
            explain_unserved(app["published"], lineage)
        (app["root"] / "run.pt").write_bytes(f"fine-tune {round_}".encode())
        assert publish(app["root"] / "run.pt", app["published"], lineage) is None
    # warnings only: the INFO line naming the undo copy is there when another test left the root logger at INFO
    assert app["published"].read_bytes() == b"fine-tune 2"
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert not list(app["published"].parent.glob("*.superseded-*"))


def test_the_advice_for_an_earlier_fine_tune_serves_it_from_a_copy(app, caplog) -> None:
    """The warning says how to go on serving a publication without a record: copy it out and configure the copy."""
    app["published"].parent.mkdir(parents=True)
    app["published"].write_bytes(b"old fine-tune")
    with caplog.at_level(logging.WARNING):
        explain_unserved(app["published"], _lineage(app, "breast.pt", "studies_a"))
    assert f"copy it out of {app['published'].parent} and start with --conf checkpoint <the copy>" in caplog.text
    shutil.copy(app["published"], app["root"] / "copy.pt")
    copy = _lineage(app, "copy.pt", "studies_a")
    assert not serves_published(app["published"], copy)  # the copy itself is served
    kept = publish(app["root"] / "run.pt", app["published"], copy)  # the first training keeps the old file once
    assert kept.read_bytes() == b"old fine-tune" and serves_published(app["published"], copy)
    (app["root"] / "run.pt").write_bytes(b"fine-tune 2")
    assert publish(app["root"] / "run.pt", app["published"], _lineage(app, "copy.pt", "studies_a")) is None


@pytest.mark.parametrize("in_place", [False, True])
def test_the_model_a_training_replaces_is_kept_once_and_served_again_when_copied_back(app, in_place: bool) -> None:
    """A fine-tune that passed validation but serves worse replaced the working model with no way back, and each
    later training started from it."""
    app["published"].parent.mkdir(parents=True)
    lineage = (Lineage.of(app["published"], str(app["root"] / "studies_a")) if in_place
               else _lineage(app, "breast.pt", "studies_a"))
    for round_ in range(3):
        (app["root"] / "run.pt").write_bytes(f"fine-tune {round_}".encode())
        assert publish(app["root"] / "run.pt", app["published"], lineage) is None
        assert previous_file(app["published"]).is_file() == (round_ > 0)
    assert previous_file(app["published"]).read_bytes() == b"fine-tune 1"  # one copy: the last replaced model
    assert sorted(p.name for p in app["published"].parent.glob("*.pt")) == [
        "usf_mae_classifier.previous.pt", "usf_mae_classifier.pt"]
    shutil.copy(previous_file(app["published"]), app["published"])  # undone
    assert serves_published(app["published"], lineage) and app["published"].read_bytes() == b"fine-tune 1"


def test_the_undo_copy_of_another_lineage_goes_aside_with_its_model(app) -> None:
    """After a fine-tune from another checkpoint, the old lineage's .previous.pt stayed: copied back as the docs say,
    it was served under the new lineage's record, another checkpoint's model taken for this app's."""
    app["published"].parent.mkdir(parents=True)
    breast, thyroid = _lineage(app, "breast.pt", "studies_a"), _lineage(app, "thyroid.pt", "studies_a")
    for content, lineage in ((b"breast 1", breast), (b"breast 2", breast), (b"thyroid 1", thyroid)):
        (app["root"] / "run.pt").write_bytes(content)
        kept = publish(app["root"] / "run.pt", app["published"], lineage)
    assert not previous_file(app["published"]).exists()  # nothing of the thyroid lineage was replaced yet
    assert kept.read_bytes() == b"breast 2" and previous_file(kept).read_bytes() == b"breast 1"
    assert app["published"].read_bytes() == b"thyroid 1" and serves_published(app["published"], thyroid)
