"""Label-efficiency curve: full fine-tuning from the pretrained and from a random start at several labelled-image
budgets per class, each tested on the same held-out images.

Every run is :func:`monai_ext.apps.crossval.run_fold` (the classification bundle's train config, then its evaluate
overlay on the test part): full fine-tuning with layer-wise lr decay, as the bundle does by default, never the linear
probe. Repeat ``r`` draws its labelled images from fold ``r``'s training + validation part of the protocol
(:func:`monai_ext.data.downstream.labels_per_class`: exactly ``count`` per class, smaller budgets nested in larger
ones) and tests on fold ``r``'s test part, which is the same for every budget and both starts; so the pretrained and
the random run of a (budget, repeat) are paired, and :func:`monai_ext.apps.comparison.paired_differences` gives the
difference with its 95 % interval per budget: the plain paired t, unadjusted, too narrow since the repeats' training
images come from overlapping parts of the same protocol (:func:`monai_ext.apps.comparison.interval_caption`).

Writes ``label_efficiency.json`` (everything, with each run's report path), ``label_efficiency.md`` (the table) and
``label_efficiency.png`` (macro-F1 and AUC against labels per class, log x axis, mean ± std over repeats).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_ext.apps.bundle_support import as_flag
from monai_ext.apps.comparison import (
    difference_text,
    interval_caption,
    paired_differences,
    pairs_note,
    statistic_text,
)
from monai_ext.apps.crossval import (
    FOLD_RECORD,
    SUMMARY_METRICS,
    FoldFailed,
    bundle_defaults,
    check_fold_resume,
    check_run_inputs,
    clear_previous_summary,
    dataset_options,
    fold_record,
    fold_score_text,
    folds_done_text,
    method_overrides,
    protocol_by_name,
    refuse_generator_options,
    run_fold,
    shared_architecture,
    split_sha256,
    start_sha256,
    summarise,
    task_of,
    warn_of_starts_trained_on_test_images,
)
from monai_ext.data.datalists import check_split, write_split
from monai_ext.data.downstream import Protocol, labels_per_class
from monai_ext.handlers.checkpointing import record_earlier_checkpoints
from monai_ext.io.atomic import atomic_write_text
from monai_ext.io.errors import one_line, root_cause, user_error_in
from monai_ext.io.json_values import json_tree
from monai_ext.io.signals import StopSignal
from monai_ext.visualize.curves import plot_errorbar_panels

logger = logging.getLogger(__name__)
DEFAULT_COUNTS = (10, 25, 50, 100)
#: The two starting points compared, in the table's order.
STARTS = ("pretrained", "random")
#: Metrics of the table (percent); the first two are plotted.
CURVE_METRICS = ("macro_f1", "auc", "balanced_accuracy", "accuracy")
PLOTTED = {"macro_f1": "test macro-F1 (%)", "auc": "test AUC, one-vs-rest (%)"}


def check_counts(counts: Sequence[object]) -> list[int]:
    """Labels-per-class budgets as sorted distinct integers of at least 2 (one training, one validation image).

    Raises:
        ValueError: an empty list, a value that is not an integer, below 2, or given twice.
    """
    values = list(counts)
    if not values:
        raise ValueError("counts must name at least one number of labels per class")
    for value in values:  # numpy's integers too, as labels_per_class takes them
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise ValueError(f"labels per class must be integers of at least 2, got {value!r} in {values!r}")
    values = [int(value) for value in values]
    if len(set(values)) != len(values):
        raise ValueError(f"labels per class must be distinct, got {values!r}")
    return sorted(values)


def curve_protocol(name: str, root: str | os.PathLike | None, cache_dir: str | os.PathLike, counts: Sequence[int],
                   per_class: int | None = None, data_seed: int = 0, num_folds: int | None = None) -> Protocol:
    """A classification protocol for the curve: no total cap on the training images (the budget is per class).

    For the generated benchmarks (``subtle``, ``synthetic``: 5 folds, a fifth of each class tested) ``per_class``
    defaults to the smallest size whose training part holds the largest budget, ``ceil(max(counts) * 5 / 4)``, and
    at least 5 (one test image per class in each of the 5 folds); ``data_seed`` draws their images and folds. A
    dataset read from ``root`` takes ``num_folds`` where its protocol has a fold count, and ``data_seed`` seeds its
    folds (:func:`~monai_ext.apps.crossval.dataset_options`).

    Raises:
        ValueError: a segmentation protocol, a ``per_class`` too small for 5 folds or for the largest budget or
            given for a dataset, or ``num_folds`` where the folds are fixed.
    """
    if task_of(name) != "classify":
        raise ValueError(f"protocol {name!r} is a segmentation protocol; the label-efficiency curve classifies")
    if name in ("subtle", "synthetic"):
        if num_folds is not None:
            raise ValueError(f"protocol {name!r} is generated with 5 folds: --num_folds does not apply to it")
        smallest = max(5, math.ceil(max(counts) * 5 / 4))
        per_class = per_class or smallest
        if per_class < smallest:
            raise ValueError(f"per_class {per_class!r} is too small: 5 folds with {max(counts)} labels per class "
                             f"need at least {smallest} images per class")
        return protocol_by_name(name, root, cache_dir, per_class=per_class, max_train=None, seed=data_seed)
    refuse_generator_options(name, per_class=per_class)  # dropped in silence: the budgets came from the dataset
    return protocol_by_name(name, root, cache_dir, **dataset_options(name, num_folds, data_seed))


def _run_dir(out: Path, count: int, start: str, repeat: int) -> Path:
    return out / f"n{count}" / start / f"rep{repeat}"


def draw_budget_splits(protocol: Protocol, counts: Sequence[int], repeats: int, val_fraction: float, data_seed: int,
                       out: Path) -> dict[tuple[int, int], dict[str, list[dict[str, Any]]]]:
    """Every (count, repeat) split, in memory and checked as the bundle would read it; nothing is written, so a
    budget refused at the last repeat leaves no datalist of the first ones (``splits/n2_rep0.json``) behind.

    Raises:
        ValueError: a budget a fold cannot give, naming the repeat, fold, protocol and classes; or a split the
            bundle would refuse (:func:`~monai_ext.data.datalists.check_split`).
    """
    splits = {}
    for r in range(repeats):
        for n in counts:
            try:
                split = labels_per_class(protocol.splits[r], n, len(protocol.class_names), val_fraction, data_seed + r)
            except ValueError as e:  # the class by name, and where: a fold's labelled part is not the whole class
                raise ValueError(f"repeat {r} (fold {r} of protocol {protocol.name!r}, classes "
                                 f"{protocol.class_names!r}): {e}") from None
            check_split(split, protocol.class_names, _split_file(out, n, r), "classification")
            splits[(n, r)] = split
    return splits


def write_budget_splits(splits: Mapping[tuple[int, int], Mapping[str, Any]], class_names: Sequence[str],
                        out: Path) -> dict[tuple[int, int], Path]:
    """Write the splits of :func:`draw_budget_splits` as ``OUT/splits/n<count>_rep<r>.json``; returns the files."""
    return {(n, r): write_split(split, class_names, _split_file(out, n, r), "classification")
            for (n, r), split in splits.items()}


def _split_file(out: Path, count: int, repeat: int) -> Path:
    return out / "splits" / f"n{count}_rep{repeat}.json"


def run_records(splits: Mapping[tuple[int, int], Mapping[str, Any]], class_names: Sequence[str],
                overrides: Mapping[str, Any], init_checkpoint: str | os.PathLike, out: Path,
                resume: bool) -> dict[tuple[int, str, int], dict[str, Any]]:
    """Each run's settings record (cross-validate's :data:`~monai_ext.apps.crossval.FOLD_RECORD`: its bundle
    settings, the SHA-256 of its split and of its start checkpoint), by (count, start, repeat); with ``resume``, each
    checked against what its folder's earlier run trained with, before anything is written.

    A resume keeps a finished run's best model and tests it as this run's, and continues an unfinished one from its
    checkpoints: the bundle's own check compares the datalist's path, which every rerun writes anew under the same
    name, not the labelled images in it, nor the start checkpoint. Without this check, a rerun from another
    pretrained checkpoint (or with other images drawn, or other settings) reported the earlier run's scores under
    the new checkpoint's name.

    Raises:
        ValueError: a run folder trained from another start, split or setting
            (:func:`~monai_ext.apps.crossval.check_fold_resume`), naming the run.
    """
    records: dict[tuple[int, str, int], dict[str, Any]] = {}
    hashes: dict[str, str | None] = {}
    defaults = bundle_defaults(None) if resume else {}
    for (n, r), split in splits.items():
        split_hash = split_sha256(split, class_names, "classification")
        for start in STARTS:
            settings = {**overrides, **method_overrides(start, str(init_checkpoint))}
            record = fold_record(settings, split_hash, start_sha256(settings.get("init_checkpoint"), hashes))
            if resume:
                # named as its folder under OUT, where the user finds what it trained with (fold_settings.json)
                check_fold_resume(_run_dir(out, n, start, r), f"run n{n}/{start}/rep{r}", record, defaults)
            records[n, start, r] = record
    return records


def prepare_run_dir(run_dir: Path, record: Mapping[str, Any], resume: bool) -> None:
    """Write a run's settings record into its folder before it trains (a run stopped midway leaves checkpoints that
    a later resume checks against it); without ``resume``, also list the checkpoints an earlier run left there, so
    that a later resume does not continue them as this run's
    (:func:`~monai_ext.handlers.checkpointing.record_earlier_checkpoints`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        record_earlier_checkpoints(run_dir / "models")
    atomic_write_text(run_dir / FOLD_RECORD, json.dumps(record, indent=1))


#: What the stop and failure messages say where no run of this invocation finished.
NO_RUN_DONE = "no run finished yet"


def train_runs(files: Mapping[tuple[int, int], Path], records: Mapping[tuple[int, str, int], Mapping[str, Any]],
               out: Path, counts: Sequence[int], repeats: int, overrides: Mapping[str, Any],
               init_checkpoint: str | os.PathLike, resume: bool,
               ) -> tuple[dict[int, dict[str, list[dict[str, Any]]]], list[dict[str, Any]]]:
    """Train and test every (repeat, budget, start) run in turn (:func:`~monai_ext.apps.crossval.run_fold`).

    A curve is hours of runs: as cross-validate does, a run that fails is raised as
    :class:`~monai_ext.apps.crossval.FoldFailed` naming it, the runs done and kept, and ``--resume true``; a stop
    (SIGTERM of a queue's time limit) says the same on stderr before it ends the curve.

    Returns:
        ``(reports, runs)``: the test reports by budget and start (in repeat order, so the starts pair), and one
        ``{"labels_per_class", "start", "repeat", "datalist", "report"}`` row per run.
    """
    reports: dict[int, dict[str, list[dict[str, Any]]]] = {n: {s: [] for s in STARTS} for n in counts}
    runs: list[dict[str, Any]] = []
    done: list[str] = []
    current = ""
    try:
        for r in range(repeats):
            for n in counts:
                for start in STARTS:
                    current = f"run n{n}/{start}/rep{r}"  # as its folder under OUT
                    run_dir = _run_dir(out, n, start, r)
                    prepare_run_dir(run_dir, records[n, start, r], resume)
                    settings = {**overrides, **method_overrides(start, str(init_checkpoint))}
                    report = _run_one(files[(n, r)], run_dir, settings, current, done)
                    reports[n][start].append(report)
                    runs.append({"labels_per_class": n, "start": start, "repeat": r, "datalist": str(files[(n, r)]),
                                 "report": str(run_dir / "eval" / "test_report.json")})
                    done.append(current)
                    # as the table counts it: a test part without a class has no macro-F1 there (n/a, naming the
                    # class), while its report holds the average over the classes it has
                    print(f"[label-efficiency] {n} labels per class, {start}, repeat {r}: test macro-F1 "
                          f"{fold_score_text(report, 'macro_f1')}", flush=True)
    except StopSignal as stop:
        print(f"label-efficiency stopped by {stop.signal_name} in {current}; {folds_done_text(done, NO_RUN_DONE)}; "
              "rerun the same command with --resume true to continue", file=sys.stderr, flush=True)
        raise
    return reports, runs


def _run_one(datalist: Path, run_dir: Path, overrides: Mapping[str, Any], name: str, done: Sequence[str],
             ) -> dict[str, Any]:
    """One run's test report; its error raised as :class:`~monai_ext.apps.crossval.FoldFailed` naming the run,
    the runs done and kept and how to go on (a user's mistake inside in one line, as the CLI shows it)."""
    try:
        return run_fold(datalist, run_dir, overrides)
    except Exception as e:
        user = user_error_in(e)
        reason = one_line(str(user)) if user is not None else root_cause(e)
        raise FoldFailed(f"{name} failed: {reason}; {folds_done_text(done, NO_RUN_DONE)}; once the cause is dealt "
                         "with, rerun with --resume true to continue") from e


#: Folds of the generated benchmarks (subtle, synthetic): repeat r uses fold r, so at most this many repeats.
GENERATED_FOLDS = 5


def check_repeats(name: str, repeats: int, num_folds: int | None = None) -> None:
    """Refuse ``--repeats`` beyond the folds a protocol will have, where that is known before its data is made or
    read: the generated benchmarks' 5, or ``--num_folds``. (A dataset's own fold count is checked once it is read,
    still before anything is written.)

    Raises:
        ValueError: quoting ``repeats`` and the fold count.
    """
    folds = GENERATED_FOLDS if name in ("subtle", "synthetic") else num_folds
    if folds is not None and not 1 <= repeats <= folds:
        raise ValueError(f"repeats must be an integer in [1, {folds}] (repeat r uses fold r of the {folds} folds of "
                         f"protocol {name!r}), got {repeats!r}")


def warn_of_start_trained_on_test_images(protocol: Protocol, init_checkpoint: str | os.PathLike,
                                         repeats: int) -> list[int]:
    """The repeats whose test part (fold ``r``'s) holds images the pretrained start's checkpoint trained or was
    selected on, by its record (a classifier fine-tuned on them, or an MAE pretrained on a folder or corpus holding
    them; cross-validate's check,
    :func:`~monai_ext.apps.crossval.warn_of_starts_trained_on_test_images`, warns per fold naming the checkpoint and
    counting them); then one line of what to do: the pretrained curve there is scored on images it saw and compared
    with a random start's that did not, so its lead is inflated. Checkpoints without such a record pass silently.

    Returns:
        The repeats warned of, for the record and the table.
    """
    found = warn_of_starts_trained_on_test_images(["pretrained"], str(init_checkpoint), protocol,
                                                  list(range(repeats))).get("pretrained", [])
    if found:
        logger.warning("label-efficiency: the pretrained start %s saw test images of repeat(s) %s (counted above): "
                       "its curve there is not of held-out images and its lead over the random start is inflated; "
                       "start from a checkpoint that did not see them (an MAE pretrained without them, e.g. on a "
                       "prepare-corpus cache with --evaluation naming the test folder, rather than a fine-tune on "
                       "this dataset), or use a protocol whose test parts it did not train on", init_checkpoint,
                       ", ".join(map(str, found)))
    return found


def label_efficiency(
    protocol: Protocol,
    out_dir: str | os.PathLike,
    init_checkpoint: str | os.PathLike,
    counts: Sequence[int] = DEFAULT_COUNTS,
    repeats: int = 3,
    overrides: Mapping[str, Any] | None = None,
    val_fraction: float = 0.2,
    data_seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune both starts at every budget and repeat; write the JSON record, the table and the figure.

    Args:
        protocol: a classification protocol (:func:`curve_protocol`); repeat ``r`` uses its split ``r``.
        out_dir: results folder (``splits/``, ``n<count>/<start>/rep<r>/`` per run, the three outputs).
        init_checkpoint: the pretrained start (pretraining bundle ``models/model.pt`` or any MAE file).
        counts: labelled images per class (training + validation).
        repeats: runs per (budget, start), at most the protocol's number of splits.
        overrides: classification-bundle overrides for every run (arch, image_size, epochs, ...).
        val_fraction: share of each budget held out for validation (best-checkpoint choice).
        data_seed: the draw of the labelled images (repeat ``r`` uses ``data_seed + r``); the bundles' own seed is
            ``overrides["seed"]``.

    Returns:
        ``{"protocol", "class_names", "counts", "repeats", "per_count", "runs", "table", "outputs"}``, and
        ``"pretrained_trained_on_test"``: the repeats whose test images the start's checkpoint records as trained
        on (:func:`warn_of_start_trained_on_test_images`; the table says so too).
    """
    counts = check_counts(counts)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= len(protocol.splits):
        raise ValueError(f"repeats must be an integer in [1, {len(protocol.splits)}] (the protocol's splits), "
                         f"got {repeats!r}")
    if not init_checkpoint or not Path(init_checkpoint).is_file():
        raise ValueError(f"init checkpoint not found: {str(init_checkpoint)!r}")
    check_run_inputs(STARTS, init_checkpoint, overrides, "classify", None, "label-efficiency")
    trained_on_test = warn_of_start_trained_on_test_images(protocol, init_checkpoint, repeats)  # before hours of runs
    overrides = shared_architecture(str(init_checkpoint), overrides)
    if str(overrides.get("linear_probe", "false")).strip().lower() in ("true", "1", "yes"):
        raise ValueError("the label-efficiency curve fine-tunes the whole network: linear_probe must stay false")
    out = Path(out_dir)
    outputs = {k: out / f"label_efficiency.{k}" for k in ("json", "md", "png")}
    splits = draw_budget_splits(protocol, counts, repeats, val_fraction, data_seed, out)  # all, before any write
    resume = as_flag(overrides.get("resume", False), "resume")
    records = run_records(splits, protocol.class_names, overrides, init_checkpoint, out, resume)  # before any write
    clear_previous_summary(list(outputs.values()))
    files = write_budget_splits(splits, protocol.class_names, out)
    reports, runs = train_runs(files, records, out, counts, repeats, overrides, init_checkpoint, resume)
    summaries = {n: summarise(reports[n], SUMMARY_METRICS) for n in counts}
    per_count = {str(n): {"summary": summaries[n], "paired_differences": paired_differences(summaries[n], *STARTS)}
                 for n in counts}
    table = efficiency_table(per_count, protocol.name, repeats, trained_on_test)
    record = {"protocol": protocol.name, "class_names": protocol.class_names, "counts": counts, "repeats": repeats,
              "val_fraction": val_fraction, "data_seed": data_seed, "init_checkpoint": str(init_checkpoint),
              "overrides": {k: str(v) for k, v in overrides.items()}, "per_count": per_count, "runs": runs,
              "pretrained_trained_on_test": trained_on_test, "table": table,
              "outputs": {k: str(v) for k, v in outputs.items()}}
    plot_efficiency(per_count, outputs["png"], f"{protocol.name}: full fine-tuning, {repeats} repeat(s)",
                    len(protocol.class_names))
    atomic_write_text(outputs["md"], table)
    atomic_write_text(outputs["json"], json.dumps(json_tree(record), indent=1, allow_nan=False))
    return record


def efficiency_table(per_count: Mapping[str, Mapping[str, Any]], name: str, repeats: int,
                     trained_on_test: Sequence[int] = ()) -> str:
    """Markdown: mean ± std per (budget, start) in percent, then pretrained minus random with 95 % paired intervals
    (unadjusted paired t, too narrow: the title says so, :func:`~monai_ext.apps.comparison.interval_caption`).
    ``trained_on_test``: the repeats whose test images the pretrained start trained on, noted under the table (the
    table outlives the run's warnings)."""
    title = (f"### {name}: full fine-tuning by labelled images per class (test, mean ± sample std over {repeats} "
             f"repeat{'s' if repeats != 1 else ''}, %)")
    lines = [title, "", "| labels per class | start | " + " | ".join(CURVE_METRICS) + " |",
             "|---|---|" + "---|" * len(CURVE_METRICS)]
    for n, entry in per_count.items():
        for start in STARTS:
            values = entry["summary"][start]
            lines.append(f"| {n} | {start} | " + " | ".join(
                statistic_text(values[m], unit="repeats") for m in CURVE_METRICS) + " |")
    diff_metrics = CURVE_METRICS[:3]
    caption = interval_caption("repeats")
    lines += ["", f"pretrained minus random, paired over the same repeats (points: mean [{caption}]):", "",
              "| labels per class | " + " | ".join(diff_metrics) + " |", "|---|" + "---|" * len(diff_metrics)]
    for n, entry in per_count.items():
        d = entry["paired_differences"]
        lines.append(f"| {n} | " + " | ".join(difference_text(d[m]) + pairs_note(d[m], "repeats")
                                               for m in diff_metrics) + " |")
    if trained_on_test:
        lines += ["", f"Note: the pretrained start trained, was selected or pretrained on test images of repeat(s) "
                      f"{', '.join(map(str, trained_on_test))}: its scores there are not of held-out images."]
    return "\n".join(lines) + "\n"


def plot_efficiency(per_count: Mapping[str, Mapping[str, Any]], path: Path, title: str, num_classes: int) -> None:
    """Macro-F1 and AUC (percent) against labels per class, one error-bar line (mean ± std) per start, and the
    chance level of each (AUC 50 %; macro-F1 100 / K % for guessing uniformly among K balanced classes)."""
    counts = [int(n) for n in per_count]
    panels = {
        label: {start: (counts, [100 * per_count[str(n)]["summary"][start][metric]["mean"] for n in counts],
                        [100 * per_count[str(n)]["summary"][start][metric]["std"] for n in counts])
                for start in STARTS}
        for metric, label in PLOTTED.items()
    }
    chance = {PLOTTED["macro_f1"]: (100 / num_classes, "chance"), PLOTTED["auc"]: (50.0, "chance")}
    plot_errorbar_panels(panels, path, title, "labelled images per class (training + validation)", log_x=True,
                         reference_lines=chance)
