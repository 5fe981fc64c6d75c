"""MLflow tracking for both bundles, on top of MONAI's ``--tracking`` mechanism and its ``MLFlowHandler``.

``python -m monai.bundle run ... --tracking bundles/<bundle>/configs/mlflow_tracking.yaml`` patches the bundle with
:class:`ProjectMLFlowHandler` on the trainer and the validator. Beyond MONAI's handler it:

* starts a fresh run for a training process (MONAI's handler would append to any unfinished run of the
  experiment, such as one left by a crash) and shares it with the validator through a :class:`RunHolder`; a run
  resumed from its checkpoints (``--resume true``) continues the MLflow run recorded beside them, so its curves go
  on from the saved step (after the steps logged already, where another batch size renumbered the iterations); a
  resume with nothing left to train starts or reopens no run;
* ends a crashed run as FAILED, and one stopped by a stop signal or Ctrl-C as KILLED;
* tracks an evaluation (``evaluate.yaml``) as a run of its own, ended at its completion and tagged with the training
  run that wrote the checkpoint it scores (``evaluated_run_id``);
* checks the tracking URI and a remote server before training starts, with a clear one-line error; a store that
  fails during training is warned of once, and the training goes on untracked (its outputs stay in its folders):
  its calls try a server a few times within seconds (:func:`http_limits`), not MLflow's minutes, and once a server
  did not answer, no call waits on it until a quick health check (every :data:`RETRY_INTERVAL_S` and at the run's
  end) finds it back; logging then goes on, the run's files and model are logged and the run ended, and the run is
  tagged ``tracking_incomplete`` with what was not logged;
* uses the ``tracking_uri`` it is given even where ``MLFLOW_TRACKING_URI`` is set (MONAI's handler prefers the
  variable);
* logs the flattened executed config, a hash of the data lists, git commit and bundle version tags, the pictures and
  metric files, the best checkpoint, and the best model (the weights of ``model.pt``, not the last epoch's) through
  ``mlflow.pytorch`` with a signature and input example (optionally registered);
* logs nothing on ranks other than 0.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import posixpath
import re
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler
from torch import nn

from monai_ext.engines.distributed import is_main_process
from monai_ext.handlers.checkpointing import MLFLOW_RUN_RECORD, list_checkpoints, logged_step, nothing_to_train
from monai_ext.io.atomic import atomic_write_text
from monai_ext.io.checkpoints import read_checkpoint
from monai_ext.io.errors import one_line
from monai_ext.io.settings import is_unset
from monai_ext.io.signals import StopSignal

logger = logging.getLogger(__name__)
PARAM_VALUE_LIMIT = 500
#: MLflow's longest param key (its own limit is 250).
PARAM_KEY_LIMIT = 250
#: Characters a param key keeps: those MLflow takes on every system (letters, digits, ``_ - .`` and spaces; ``/``
#: too, but a key with ``/`` must also be a normalised path, so it is replaced with the rest).
_PARAM_KEY_REFUSED = re.compile(r"[^\w\-. ]")
#: Characters a metric name keeps: those MLflow takes (letters, digits, ``_ - .``, spaces, ``:`` and ``/``).
_METRIC_KEY_REFUSED = re.compile(r"[^\w\-. :/]")


@contextmanager
def _environment_without(name: str | None) -> Iterator[None]:
    """Within the block, the environment lacks the variable ``name`` (nothing changes for None); restored after."""
    saved = os.environ.pop(name, None) if name else None
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


#: MLflow's HTTP settings for this project's calls, where the user has not set them: MLflow's own (7 retries with a
#: doubling backoff, 120 s a try) held a training for 247 s on one call to a stopped server, and again in the run's
#: end. Two retries 1 s apart ride out a blip; 60 s a try still waits for a large model's upload to be stored.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


#: Seconds between tries of a store that failed during the training (one health check of a server that did not answer,
#: at most 5 s; or the next call itself): a server restarted after minutes gets the rest of a days-long run.
RETRY_INTERVAL_S = 300.0
#: Seconds the probe of a store that failed may take (one try, whatever the environment sets).
RETRY_HEALTH_TIMEOUT_S = 5.0
#: MLflow's HTTP settings for that probe: a probe must stay quick, or a half-working server (its /health answering,
#: its database locked) holds the training at each try for the retries of a normal call (3 x 60 s).
PROBE_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(RETRY_HEALTH_TIMEOUT_S))}


@contextmanager
def http_limits(forced: Mapping[str, str] | None = None) -> Iterator[None]:
    """Within the block, MLflow's HTTP calls use :data:`HTTP_LIMITS` (those the environment does not set already)
    and ``forced`` (whatever it sets: :data:`PROBE_LIMITS`); the environment is restored after. MLflow reads these
    variables at each request, so only calls made in the block (this project's tracking calls) are limited."""
    forced = dict(forced or {})
    saved = {name: os.environ.get(name) for name in [*HTTP_LIMITS, *forced]}
    os.environ.update({name: value for name, value in HTTP_LIMITS.items() if saved[name] is None})
    os.environ.update(forced)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def is_unreachable(error: BaseException) -> bool:
    """Whether a tracking call failed because the server could not be reached or did not answer in time (a refused
    connection, a timeout, a lost network), as opposed to an answer that was an error (503, a full disk): MLflow
    wraps the HTTP layer's error in its own, so the chain of causes is searched."""
    import requests

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def tracking_errors() -> tuple[type[BaseException], ...]:
    """What a tracking call raises when the store or server fails: MLflow's own error, the HTTP layer's, the file
    system's."""
    import requests
    from mlflow.exceptions import MlflowException

    return MlflowException, requests.exceptions.RequestException, OSError


def _is_scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RunHolder:
    """The id of the MLflow run of this process, shared by the trainer's and the validator's handlers.

    The record names the run and the checkpoints that were in the folder before it started (an earlier run's,
    removed only at this run's first save): a run killed before it saved anything must not have a later resume of
    those earlier checkpoints continue its MLflow run.

    Args:
        parent_run_id: make the run a nested child of this run (cross-validation folds), or MLFLOW_PARENT_RUN_ID.
        record_file: JSON file (in the checkpoint folder) naming the run that wrote the checkpoints there.
        resume: this process resumes from those checkpoints, so it continues the recorded run (when the tracking
            store and experiment still hold it and it wrote a checkpoint there) instead of starting a new one.
    """

    def __init__(self, parent_run_id: str | None = None, record_file: str | None = None, resume: bool = False) -> None:
        self.run_id: str | None = None
        self.parent_run_id = parent_run_id or os.environ.get("MLFLOW_PARENT_RUN_ID") or None
        self.record_file = Path(record_file) if record_file else None
        self.resume = bool(resume)
        self._continued: dict[str, Any] | None = None  # the record of the run this process continues
        # set when the store failed during training: both handlers then stop logging (one warning, no crash)
        self.offline = False
        # set when that failure was a server that could not be reached: no call is tried until a health check finds
        # it back (each call would wait out its retries again for nothing)
        self.unreachable = False
        self.failure: str | None = None  # the first call that failed, and why (tagged as tracking_incomplete)
        self.lost_calls = 0  # logging calls failed or skipped while the store was failing
        self.retry_at = 0.0  # time.monotonic() of the next try of a store that failed
        self.recovering = False  # a store that failed is tried again: its next success is said
        self.end_tried = False  # the run's end tried the store at once (once: its files, then its end, wait no more)
        self.resume_number = 0  # which resume of its run this process is (0: a new run)
        self.resume_point_due = False  # the trainer's position at the resume is tagged at its first iteration

    def recorded_run(self, client: Any, experiment_id: str) -> str | None:
        """The id of the run recorded in ``record_file`` when this process resumes it, else None.

        A record from another tracking store or experiment, of a deleted run, or of a run that wrote none of the
        checkpoints in the folder (or a folder without checkpoints, where training starts afresh) is not continued:
        the training then starts a new MLflow run, as it did before runs were recorded.
        """
        if not (self.resume and self.record_file and self.record_file.is_file()):
            return None
        from mlflow.exceptions import MlflowException

        try:
            record = json.loads(self.record_file.read_text(encoding="utf-8"))
            run_id = str(record["run_id"])
            earlier = {name: tuple(stamp) for name, stamp in record.get("earlier_checkpoints", {}).items()}
            run = client.get_run(run_id)
        # unreadable, of another layout, or not in this store
        except (OSError, ValueError, KeyError, TypeError, AttributeError, MlflowException) as e:
            logger.info("MLflow: not continuing the run recorded in %s (%s); starting a new run", self.record_file, e)
            return None
        if run.info.experiment_id != experiment_id or run.info.lifecycle_stage != "active":
            return None
        # every checkpoint there is an earlier run's, or there is none (the training starts afresh)
        if all(earlier.get(name) == stamp for name, stamp in self._checkpoint_stamps().items()):
            logger.info("MLflow: run %s has no checkpoint in %s to resume; starting a new run", run_id,
                        self.record_file.parent)
            return None
        self._continued = {"run_id": run_id, "earlier_checkpoints": record.get("earlier_checkpoints", {})}
        return run_id

    def record(self, run_id: str) -> None:
        """Write ``record_file`` for a later resume (rank 0 only: the handlers are disabled on other ranks).

        A new run lists the checkpoints already in the folder as earlier ones; a resumed run continues their
        lineage, so it lists none (or keeps the list of the run it continues).
        """
        if self.record_file is None:
            return
        if self._continued is not None and self._continued["run_id"] == run_id:
            record = self._continued
        else:
            earlier = {} if self.resume else {name: list(stamp) for name, stamp in self._checkpoint_stamps().items()}
            record = {"run_id": run_id, "earlier_checkpoints": earlier}
        atomic_write_text(self.record_file, json.dumps(record) + "\n")

    def _checkpoint_stamps(self) -> dict[str, tuple[int, int, int]]:
        """``{name: (inode, mtime in ns, size)}`` of the trainer checkpoints beside ``record_file``."""
        return {path.name: stamp for path, stamp in file_stamps(list_checkpoints(self.record_file.parent)).items()}


def evaluated_run(client: Any, checkpoint: str | os.PathLike) -> str | None:
    """The id of the MLflow run that trained ``checkpoint``: the run recorded beside it (:data:`MLFLOW_RUN_RECORD`,
    written by a tracked training into that folder), when the store holds it and the checkpoint is not older than
    the run (a later training into the folder that stopped before its first best model records itself beside the
    earlier training's ``model.pt``); None where that is not known (an untracked training, another store)."""
    from mlflow.exceptions import MlflowException

    path = Path(checkpoint)
    try:
        run_id = str(json.loads((path.parent / MLFLOW_RUN_RECORD).read_text(encoding="utf-8"))["run_id"])
        run = client.get_run(run_id)
        written_ms = path.stat().st_mtime_ns // 1_000_000
    except (OSError, ValueError, KeyError, TypeError, AttributeError, MlflowException):
        return None
    # a minute's leeway: the file's time is the file server's clock, the run's the training machine's
    if run.info.lifecycle_stage != "active" or written_ms < (run.info.start_time or 0) - 60_000:
        return None
    return run_id


def sqlite_artifact_location(tracking_uri: str) -> str | None:
    """Where the runs of a local SQLite store keep their artifacts: ``mlruns`` beside the database, where MONAI's
    ``MLFlowHandler`` puts a bundle run's; None for other stores (a server decides itself).

    Left to MLflow, an experiment created on a SQLite store keeps its artifacts in ``./mlruns`` of whichever folder
    the command ran in, apart from the database a user was told to look in.
    """
    from urllib.parse import unquote

    from monai.utils import path_to_uri

    if not str(tracking_uri).startswith("sqlite:///"):
        return None
    # the URI's path is percent-encoded (a space is %20): taken as it is, the artifacts went to a sibling folder
    # literally named "my%20run"
    return path_to_uri(Path(unquote(str(tracking_uri)[len("sqlite:///"):])).parent / "mlruns")


def check_tracking_uri(tracking_uri: str | None, timeout: float = 5.0) -> None:
    """Raise ``ValueError`` now, before any training, for a tracking URI MLflow cannot use: a folder or ``file:``
    URI (MLflow 3 has no file store), a SQLite database that cannot be written (:func:`check_sqlite_database`), or
    an http(s) server that does not answer (:func:`check_tracking_server`)."""
    if not tracking_uri:
        return
    uri = str(tracking_uri)
    if uri.startswith("file:"):
        raise ValueError(f"tracking_uri {uri!r} is a file: URI: MLflow 3 keeps runs in a database or on a server; give "
                         f"{file_uri_as_sqlite_uri(uri)} or http://<host>:<port>")
    if "://" not in uri and not uri.startswith("databricks"):  # "databricks": a profile
        raise ValueError(path_as_tracking_uri_message(uri))
    check_sqlite_database(uri)
    check_tracking_server(uri, timeout)


def file_uri_as_sqlite_uri(uri: str) -> str:
    """The SQLite URI of a database in the folder a ``file:`` URI names (percent-decoded, made absolute), for the
    message that refuses it: it said ``sqlite:///<folder>/mlruns.db``, and a folder with spaces or accents had to be
    percent-encoded by hand."""
    from urllib.parse import unquote, urlparse

    from monai.utils import path_to_sqlite_uri

    folder = Path(unquote(urlparse(uri).path) or ".").expanduser().absolute()
    return path_to_sqlite_uri(str(folder / "mlruns.db"))


#: Endings of a path given as tracking URI that name a SQLite database file rather than a folder.
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def path_as_tracking_uri_message(path: str) -> str:
    """What to say of a plain path given as tracking URI, with the URI to give instead: a database file
    (``runs/mlruns.db``) as ``sqlite:///<absolute path>``, a folder as a database in it. It was called "a folder"
    in every case, a database file too. Not taken as SQLite unasked: MLflow reads a bare path as a file store."""
    from monai.utils import path_to_sqlite_uri

    absolute = Path(path).expanduser().absolute()
    if absolute.suffix.lower() in SQLITE_SUFFIXES:
        return (f"tracking_uri {path!r} is a path, not a URI: for a SQLite database there give "
                f"{path_to_sqlite_uri(str(absolute))} (or http://<host>:<port> for a server)")
    return (f"tracking_uri {path!r} is a path, not a URI: MLflow 3 keeps runs in a database or on a server; give "
            f"{path_to_sqlite_uri(str(absolute / 'mlruns.db'))} or http://<host>:<port>")


def check_sqlite_database(tracking_uri: str) -> None:
    """Raise ``ValueError`` naming the path when a ``sqlite:///`` database cannot be created or written: MLflow
    retried for about two minutes and then ended the command with a long traceback ("unable to open database
    file") that named no path. MLflow makes missing folders itself, so the nearest existing one must take files."""
    import tempfile
    from urllib.parse import unquote

    if not tracking_uri.startswith("sqlite:///") or tracking_uri.startswith("sqlite:///:memory:"):
        return
    database = Path(unquote(tracking_uri[len("sqlite:///"):].split("?", 1)[0]))
    if database.is_dir():
        raise ValueError(f"tracking_uri {tracking_uri!r} names a folder, not a database file: give "
                         f"sqlite:///{database.as_posix().rstrip('/')}/mlruns.db")
    folder = next(p for p in (database.parent, *database.parent.parents) if p.exists())
    if not folder.is_dir():
        raise ValueError(f"tracking_uri {tracking_uri!r}: the database's folder cannot be made, {folder} is a file")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
        if database.exists() and not os.access(database, os.R_OK | os.W_OK):
            raise PermissionError(f"{database} is not readable and writable")
    except OSError as e:
        raise ValueError(f"tracking_uri {tracking_uri!r}: cannot write the database in {folder} "
                         f"({e.strerror or e}); give a folder this user can write") from e


def check_tracking_server(tracking_uri: str | None, timeout: float = 5.0) -> None:
    """Raise ``ValueError`` now, before any training, when an http(s) tracking server does not answer its health
    check, asked as MLflow asks (its credentials, ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` / ``_TOKEN``, and
    TLS settings); a refusal of the credentials is told apart."""
    if not tracking_uri or not str(tracking_uri).startswith(("http://", "https://")):
        return
    uri = str(tracking_uri).rstrip("/")
    try:
        status = _health_status(uri, timeout)
    except Exception as e:  # noqa: BLE001 - refused connections, timeouts, TLS and DNS errors: all say "unreachable"
        raise ValueError(f"MLflow tracking server {tracking_uri!r} is unreachable ({one_line(str(e))[:300]}); start "
                         "it, fix --tracking_uri / MLFLOW_TRACKING_URI, or run without --tracking") from e
    if status in (401, 403):
        raise ValueError(f"MLflow tracking server {tracking_uri!r} refused the credentials (HTTP {status}); set "
                         "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)")
    if status != 200:
        raise ValueError(f"MLflow tracking server {tracking_uri!r} is unreachable (HTTP {status} from /health); "
                         "start it, fix --tracking_uri / MLFLOW_TRACKING_URI, or run without --tracking")


def _health_status(uri: str, timeout: float) -> int:
    """The HTTP status of ``uri``/health, asked once (no retries: MLflow's retry for minutes)."""
    from mlflow.tracking._tracking_service.utils import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(get_default_host_creds(uri), "/health", "GET", max_retries=0, timeout=timeout,
                            raise_on_status=False)
    return int(response.status_code)


#: Keys of MONAI's executed config that differ on every run: no setting of the run, and a resume tagged them as
#: changed (``save_execute_config`` holds MONAI's unevaluated path text with the start time; ``resume`` is true in
#: every resume of a run started without it, which the ``resumes`` tag counts already).
PER_RUN_KEYS = frozenset({"save_execute_config", "resume"})


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a (resolved) bundle config into MLflow params: ``a.b.c -> value`` ('#' is not allowed in keys).

    Values longer than :data:`PARAM_VALUE_LIMIT` characters are cut; lists of dicts (data lists) are summarised by
    their length, so no file names (which may carry patient identifiers) reach the params.
    """
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if str(key).startswith("_") and prefix == "":
            continue  # _meta_ and _requires_: logged as tags instead
        if prefix == "" and key in PER_RUN_KEYS:
            continue
        if isinstance(value, Mapping):
            params.update(flatten_config(value, name))
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            params[name] = f"<{len(value)} items>"
        else:
            params[name] = str(value)[:PARAM_VALUE_LIMIT]
    return {param_key(k): v for k, v in params.items()}


def _param_text(value: Any) -> str:
    """A param value: a list or tuple of names as ``a,b``, anything else as its text, cut at
    :data:`PARAM_VALUE_LIMIT`."""
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text[:PARAM_VALUE_LIMIT]


def param_key(key: str) -> str:
    """``key`` as MLflow takes a param key: ``#`` (MONAI's id separator) as ``.``, other characters MLflow refuses
    (a class name such as ``benign (BI-RADS 3)`` in a user's overlay) as ``_``, at most :data:`PARAM_KEY_LIMIT`
    characters. Refused, the key would stop the training as it starts."""
    return _PARAM_KEY_REFUSED.sub("_", key.replace("#", "."))[:PARAM_KEY_LIMIT]


def _path_not_unique(key: str) -> bool:
    """MLflow's refusal of a name that is not its own normalised path (``a//b``, ``/a``, ``.``, ``..a``)."""
    norm = posixpath.normpath(key)
    return norm != key or norm == "." or norm.startswith(("..", "/"))


def metric_key(name: str) -> str:
    """``name`` as MLflow takes a metric name: characters it refuses (a class name such as ``auc_benign (BI-RADS 3)``
    in a user's metric) as ``_``, ``/`` kept only in a normalised path, at most :data:`PARAM_KEY_LIMIT` characters.
    Refused, the name failed the whole batch, which turned tracking off for the rest of the training as a failed
    server does. A name that had to change ends in ``_`` and 8 hex digits of its SHA-256: two names that differ only
    in refused characters (``recall <10 mm``, ``recall >10 mm``) or beyond the limit would share one series, one
    value lost without an error; the suffix is the same at every run and resume."""
    name = str(name)
    key = _METRIC_KEY_REFUSED.sub("_", name)[:PARAM_KEY_LIMIT]
    if _path_not_unique(key):
        key = key.replace("/", "_")
    if _path_not_unique(key):  # ".", "..", "..a": nothing but the leading dots is wrong
        key = "_" + key.lstrip(".")
    if key == name:
        return key
    suffix = "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return key[: PARAM_KEY_LIMIT - len(suffix)] + suffix


def datalist_hash(datalists: Sequence[Sequence[Mapping[str, Any]]]) -> str:
    """SHA-256 (first 16 hex digits) of the sorted image paths and labels of the given data lists."""
    digest = hashlib.sha256()
    for datalist in datalists:
        for item in sorted(json.dumps(dict(i), sort_keys=True, default=str) for i in datalist):
            digest.update(item.encode())
        digest.update(b"|")
    return digest.hexdigest()[:16]


def file_stamps(paths: Sequence[str | os.PathLike]) -> dict[Path, tuple[int, int, int]]:
    """``{file: (inode, mtime in ns, size)}`` of each existing file in ``paths`` (a folder stands for every file under
    it). The inode tells an atomically replaced file from the old one even where timestamps are coarse."""
    stamps = {}
    for path in map(Path, paths):
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path] if path.is_file() else []
        for file in files:
            status = file.stat()
            stamps[file] = (status.st_ino, status.st_mtime_ns, status.st_size)
    return stamps


def git_commit(repo: str | os.PathLike | None = None) -> str:
    """The repository's HEAD commit, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=repo or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pt2_model_options() -> dict[str, Any]:
    """``mlflow.pytorch.log_model`` settings for a torch.export graph (pt2, no pickle) with the flavor's own
    requirements, on MLflow versions that have ``serialization_format`` (early 2026 on); ``{}`` on older ones.

    A pt2 model needs torch alone to load, wherever it is served, and the flavor's requirements say so. Left to infer
    them, MLflow reloads the model in a subprocess to find the same list (5 to 10 s at the end of every run). Older
    MLflow versions pickle the model, whose classes are this package's: their inferred requirements are kept, and
    the keyword, which they would hand on to ``torch.save``, is not given.
    """
    import inspect

    import mlflow.pytorch

    if "serialization_format" not in inspect.signature(mlflow.pytorch.log_model).parameters:
        return {}
    return {"serialization_format": "pt2", "pip_requirements": mlflow.pytorch.get_default_pip_requirements()}


class ReconstructionModel(nn.Module):
    """The MAE as a plain predictor for MLflow: images (N, C, H, W) -> per-patch reconstruction (N, L, P*P*C).

    Every image gets the same fixed mask (a stored noise row), so the logged model predicts deterministically and
    exports with a dynamic batch dimension.
    """

    def __init__(self, mae: nn.Module, mask_ratio: float = 0.75) -> None:
        super().__init__()
        self.mae = mae
        self.mask_ratio = mask_ratio
        noise = torch.rand(1, mae.num_patches, generator=torch.Generator().manual_seed(0))
        self.register_buffer("noise", noise.to(next(mae.parameters()).device))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.mae(images, self.mask_ratio, self.noise.expand(images.shape[0], -1))[1]


class ProjectMLFlowHandler(MLFlowHandler):
    """MONAI's ``MLFlowHandler`` with this project's run handling and logging (see the module docstring).

    Args:
        run_holder: shared between the trainer's and validator's handlers.
        config_dir: folder where MONAI saved the executed config (``config_<time>.json``, with
            ``save_execute_config``); the newest one is flattened into params and logged as an artifact.
        datalists: data lists whose hash becomes the ``dataset_hash`` param.
        tags: extra tags (bundle name and version, recipe ...).
        network: the model to log with ``mlflow.pytorch`` at completion (trainer handler only).
        best_model: the run's :class:`~monai_ext.handlers.checkpointing.BestModelSaver`: the logged (and registered)
            model gets the weights it saved, those that the validation metrics and ``model.pt`` describe, and the
            run's ``logged_model`` tag says which epoch they are of. Without one, or before any validation, the
            network as training left it is logged, and the tag says so.
        input_shape: (C, H, W) of the model input, for the signature and input example.
        model_kind: "mae" (logged as :class:`ReconstructionModel`) or "classifier".
        artifact_paths: files or folders logged as artifacts at completion (missing ones are skipped). Only files
            written or changed since this handler was built are logged: a rerun into the same ``output_dir`` leaves
            the earlier run's pictures there (``epoch_0009.png`` of a longer run), and they are not this run's.
        resumed: the run continues an earlier one in the same folders (``--resume true``), so the files that were
            there before it started are its own earlier outputs and are logged too.
        registered_model_name: also register the logged model under this name.
        record_run: write the run's id to the run holder's ``record_file`` (the trainer's handler: the checkpoints
            beside it are this run's; an evaluation, which has no trainer, leaves the record of the training run).
        resolved_params: settings logged with their values, in place of the expressions the executed config holds
            for them (``num_classes`` is ``$len(@class_names)`` there, which no search or comparison of runs reads).
        evaluated_checkpoint: the checkpoint an evaluation scores (``evaluate.yaml``'s ``ckpt_path``; None in a
            training): the handler then tracks the evaluation as a new run of its own (never a training's run, not
            even with ``--resume true``), tagged ``evaluated_checkpoint`` and ``evaluated_run_id`` (the training run
            that wrote it: :func:`evaluated_run`), and ends it at completion.
        **kwargs: ``MLFlowHandler`` arguments (tracking_uri, experiment_name, run_name, ...).
    """

    def __init__(
        self,
        run_holder: RunHolder,
        config_dir: str | None = None,
        datalists: Sequence[Sequence[Mapping[str, Any]]] | None = None,
        tags: Mapping[str, Any] | None = None,
        network: nn.Module | None = None,
        best_model: Any = None,
        input_shape: Sequence[int] | None = None,
        model_kind: str = "classifier",
        artifact_paths: Sequence[str] | None = None,
        resumed: bool = False,
        registered_model_name: str | None = None,
        record_run: bool = False,
        resolved_params: Mapping[str, Any] | None = None,
        evaluated_checkpoint: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        self.evaluated_checkpoint = None if is_unset(evaluated_checkpoint) else Path(evaluated_checkpoint).absolute()
        if self.evaluated_checkpoint is not None:
            # no trainer ends an evaluation's run: left to itself it stayed RUNNING in the store for good
            kwargs["close_on_complete"] = True
        given_uri = None if is_unset(kwargs.get("tracking_uri")) else kwargs.get("tracking_uri")
        check_tracking_uri(given_uri or os.environ.get("MLFLOW_TRACKING_URI"))
        if is_unset(kwargs.get("run_name")):  # --run_name null arrives as text: MLflow would name the run "null"
            kwargs["run_name"] = None
        # MONAI's handler gives MLFLOW_TRACKING_URI priority over the URI it is given (a variable a shell profile
        # exports sent a run asked for elsewhere to the team server, and cross-validation's folds away from their
        # parent run), and a folder there refused the given URI: without the variable, it uses the given one
        with _environment_without("MLFLOW_TRACKING_URI" if given_uri else None):
            super().__init__(**kwargs)
        if kwargs.get("artifact_location") is None:  # MONAI's leaves the SQLite URI's path percent-encoded
            self.artifact_location = sqlite_artifact_location(self.client.tracking_uri)
        self.run_holder = run_holder
        self.config_dir = config_dir
        self.datalists = datalists
        self.tags = {k: str(v) for k, v in (tags or {}).items()}
        self.network = network
        self.best_model = best_model
        self.input_shape = tuple(input_shape) if input_shape else None
        self.model_kind = model_kind
        self.artifact_paths = [str(p) for p in artifact_paths or []]
        # file -> modification stamp before this run wrote anything; compared, not timed, so clock skew on a shared
        # file system cannot hide a file of this run or pass off an old one as new
        self.stamps_before: dict[Path, tuple[int, int, int]] = {} if resumed else file_stamps(self.artifact_paths)
        self.registered_model_name = None if is_unset(registered_model_name) else registered_model_name
        self.record_run = record_run
        self.resolved_params = {param_key(str(k)): _param_text(v) for k, v in (resolved_params or {}).items()}
        self._step_offset = 0  # added to the steps of the metrics logged while an iteration is logged
        self._renamed_metrics: set[str] = set()  # metric names logged under another name (said once each)

    # ------------------------------------------------------------------------------------------------ run handling
    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        # The failure handler must run first: other handlers (StatsHandler) re-raise and would stop the chain.
        # ignite has no public way to reorder handlers, so the entry it just added is moved to the front.
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._mark_failed)
        handlers = engine._event_handlers[Events.EXCEPTION_RAISED]
        handlers.insert(0, handlers.pop())
        engine.add_event_handler(Events.ITERATION_STARTED, self._tag_resume_point)

    def start(self, engine: Engine) -> None:
        """Start (or join) the run. The first start happens before training, where a store that fails stops the
        command; a later one (the validator's, after the first epoch) is guarded like any logging.

        A trainer restored at or past its ``max_epochs`` (a resume with nothing left to train) trains no iteration:
        no run is started or reopened, so the tracked run stays as its last training left it (its status, end time,
        files and model: a no-op command adds no model version to the registry). The checkpointer restores first at
        ``STARTED`` and says that there is nothing to train.
        """
        if hasattr(engine, "optimizer") and nothing_to_train(engine):
            logger.info("MLflow: nothing to train (epoch %d of %d): no run started or reopened", engine.state.epoch,
                        engine.state.max_epochs)
            return
        if self.run_holder.run_id is None:
            with http_limits():
                self._start(engine)
        else:
            self._guarded("join the run", self._start, engine)

    def _start(self, engine: Engine) -> None:
        if not self.cur_run:
            self._set_experiment()
            if self.run_holder.run_id is None and self.evaluated_checkpoint is not None:
                self.run_holder.run_id = self._new_run(self._evaluation_tags())
            if self.run_holder.run_id is None:
                self.run_holder.run_id = self._continued_run() or self._new_run()
            if self.record_run:
                self.run_holder.record(self.run_holder.run_id)
            self.cur_run = self.client.get_run(self.run_holder.run_id)
            # Whichever handler starts first creates the shared run (the validator does, when an evaluation runs
            # before training: the representation monitor's epoch-0 baseline), so each adds its own tags here.
            for key, value in self.tags.items():
                if self.cur_run.data.tags.get(key) != value:
                    self.client.set_tag(self.run_holder.run_id, key, value)
        if not hasattr(engine, "optimizer"):
            # MONAI logs the engine's max_epochs and epoch_length: a validator's (1 and its batches) would be logged
            # first when it starts first (the monitor's baseline), and params cannot be replaced
            self.default_tracking_params = []
        engine_params = {attr: str(getattr(engine.state, attr, None)) for attr in self.default_tracking_params}
        super().start(engine)
        params: dict[str, str] = {}
        # MONAI names the file after the time; its own "save_execute_config" reference is broken when output_dir
        # is overridden with a plain path, so the newest file in the folder is taken.
        configs = sorted(Path(self.config_dir).glob("config_*.json"), key=os.path.getmtime) if self.config_dir else []
        if configs:
            params.update(flatten_config(json.loads(configs[-1].read_text())))
            if configs[-1].as_posix() not in self.artifact_paths:
                self.artifact_paths.append(configs[-1].as_posix())
        params.update(self.resolved_params)
        if self.datalists is not None:
            params["dataset_hash"] = datalist_hash(self.datalists)
            params["dataset_sizes"] = ",".join(str(len(d)) for d in self.datalists)
        logged = self.client.get_run(self.cur_run.info.run_id).data.params
        self._tag_changed_settings({**engine_params, **params}, logged)
        params = {k: v for k, v in params.items() if k not in logged}
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._log_params(dict(items[i : i + 100]))

    def _tag_changed_settings(self, current: Mapping[str, str], logged: Mapping[str, str]) -> None:
        """A resumed run's settings that differ from those its first attempt logged (params cannot be replaced:
        another world size, more epochs), as tags ``resume_<n>.<name>``, so the run does not describe only its first
        attempt."""
        number = self.run_holder.resume_number
        if not number or not is_main_process():
            return
        changed = {k: v for k, v in current.items() if k in logged and logged[k] != v}
        for key, value in changed.items():
            self._guarded("tag a changed setting", self.client.set_tag, self.run_holder.run_id,
                          f"resume_{number}.{key}"[:250], value[:5000])
        if changed:
            logger.info("MLflow: resume %d changed %s (tagged resume_%d.<name>)", number, ", ".join(sorted(changed)),
                        number)

    def _tag_resume_point(self, engine: Engine) -> None:
        """Tag the step a resumed run went on from (``resume_<n>.from_iteration``, in the steps its iterations are
        logged under, :func:`logged_step`): the iterations between the last checkpoint and the crash are trained and
        logged again, and MLflow cannot delete the first attempt's points, so its curves hold two points at each of
        those steps; the tag says from where."""
        if not self.run_holder.resume_point_due or not hasattr(engine, "optimizer"):  # the trainer's position only
            return
        self.run_holder.resume_point_due = False
        if self.cur_run and is_main_process():
            self._guarded("tag the resume point", self.client.set_tag, self.run_holder.run_id,
                          f"resume_{self.run_holder.resume_number}.from_iteration", str(logged_step(engine) - 1))

    def _evaluation_tags(self) -> dict[str, str]:
        """The tags that say what an evaluation scored: the checkpoint and, where known, the training run."""
        tags = {"evaluated_checkpoint": str(self.evaluated_checkpoint)}
        training = evaluated_run(self.client, self.evaluated_checkpoint)
        if training is not None:
            tags["evaluated_run_id"] = training
        logger.info("MLflow: evaluation of %s (%s)", self.evaluated_checkpoint,
                    f"training run {training}" if training else "no tracked training run recorded beside it")
        return tags

    def _new_run(self, extra_tags: Mapping[str, str] | None = None) -> str:
        tags = {"git_commit": git_commit(), **(extra_tags or {})}
        if self.run_holder.parent_run_id:
            tags["mlflow.parentRunId"] = self.run_holder.parent_run_id
        # MONAI's own default name: with none, MLflow draws one from Python's global random, which the bundles seed,
        # so every run of a bundle was called the same
        run_name = self.run_name or f"run_{time.strftime('%Y%m%d_%H%M%S')}"
        return self.client.create_run(self.experiment.experiment_id, run_name=run_name, tags=tags).info.run_id

    def _continued_run(self) -> str | None:
        """Reopen the run this process resumes (a crashed run ended FAILED or was left RUNNING by a kill)."""
        run_id = self.run_holder.recorded_run(self.client, self.experiment.experiment_id)
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            tags = self.client.get_run(run_id).data.tags
            parent = self.run_holder.parent_run_id
            if parent and tags.get("mlflow.parentRunId") != parent:
                # a resumed cross-validation's parent may be another run (the first one was deleted): the fold goes
                # with the parent that summarises it, not the one that holds its first attempt
                self.client.set_tag(run_id, "mlflow.parentRunId", parent)
                logger.info("MLflow: run %s now belongs to parent run %s (was %s)", run_id, parent,
                            tags.get("mlflow.parentRunId"))
            resumes = int(tags.get("resumes", "0")) + 1
            self.client.set_tag(run_id, "resumes", str(resumes))
            self.run_holder.resume_number, self.run_holder.resume_point_due = resumes, True
            logger.info("MLflow: continuing run %s (resume %d)", run_id, resumes)
        return run_id

    def _log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Log scalar metrics only: the classification report's per-class tables, confusion matrix and ROC points
        are artifacts (the report JSON and PNGs), not metric series."""
        scalars = {self._metric_key(k): float(v) for k, v in metrics.items() if _is_scalar(v)}
        if scalars:
            super()._log_metrics(scalars, step if step is None else step + self._step_offset)

    def _metric_key(self, name: str) -> str:
        """:func:`metric_key` of ``name``; a name that had to change is said once."""
        key = metric_key(name)
        if key != name and name not in self._renamed_metrics:
            self._renamed_metrics.add(name)
            logger.warning("MLflow: metric %r is logged as %r (MLflow refuses the name as it is)", name, key)
        return key

    def _mark_failed(self, engine: Engine, error: BaseException) -> None:
        # tried even after a store error earlier in the run: that error may have passed (a server restarted); after
        # a server that could not be reached only once its quick health check answers (its retries would hold the
        # training's own error)
        if self.cur_run and is_main_process() and (not self.run_holder.unreachable or self._store_back(final=True)):
            run_id = self.cur_run.info.run_id
            # a stop signal (a queue's time limit, docker stop) or Ctrl-C is a stop asked for, not a fault: MLflow's
            # KILLED, so that a search for FAILED runs finds the crashes only
            stopped = isinstance(error, (StopSignal, KeyboardInterrupt))
            status = "KILLED" if stopped else "FAILED"
            try:
                with http_limits():
                    self._tag_incomplete(run_id)
                    self.client.set_terminated(run_id, status=status)
                # Ctrl-C's KeyboardInterrupt has no message: the line ended in "FAILED: "
                (logger.warning if stopped else logger.error)("MLflow run %s ended as %s: %s", run_id, status,
                                                              str(error) or type(error).__name__)
            except tracking_errors() as e:  # the training's own error is the one to surface
                logger.warning("MLflow: run %s could not be marked %s (%s)", run_id, status, one_line(str(e))[:300])
        self.cur_run = None
        raise error

    # ------------------------------------------------------------------------------------ logging during the run
    def _guarded(self, what: str, log: Any, *args: Any, final: bool = False) -> None:
        """``log(*args)``, unless the store failed earlier in this process and is not tried again yet
        (:meth:`_store_back`; ``final``: the run's end, which tries it at once). A failure (a server restarted, a
        full disk) is warned of once and turns logging off until the store is back, instead of ending a training
        that may have run for days. Its checkpoints, metrics.json and pictures are written as ever."""
        holder = self.run_holder
        if holder.offline and not self._store_back(final):
            holder.lost_calls += 1
            return
        try:
            with http_limits():
                log(*args)
        except tracking_errors() as e:
            holder.offline, holder.unreachable, holder.recovering = True, is_unreachable(e), False
            holder.retry_at = time.monotonic() + RETRY_INTERVAL_S
            holder.lost_calls += 1
            if holder.failure is None:  # said once: a store down for hours is tried every few minutes
                holder.failure = f"could not {what} ({one_line(str(e))[:300]})"
                logger.warning("MLflow: %s; the training goes on without tracking (the store is tried again every "
                               "%d s and at the end), its outputs stay in its folders", holder.failure,
                               RETRY_INTERVAL_S)
            return
        if holder.recovering:
            holder.recovering = False
            logger.warning("MLflow: the store answers again; tracking goes on (%d logging call(s) were lost, the "
                           "run is tagged tracking_incomplete)", holder.lost_calls)

    def _store_back(self, final: bool = False) -> bool:
        """Whether to try a store that failed earlier again now: once every :data:`RETRY_INTERVAL_S` (``final``, the
        run's end: at once, the first time), and only once a quick probe answers: the run read from the store, one
        try of at most :data:`RETRY_HEALTH_TIMEOUT_S` (:data:`PROBE_LIMITS`). Not the server's ``/health``, which
        answers while a locked database or a failing-over one hangs every call: each try then held the training for
        a normal call's retries. Before, a server that went away for a minute lost the rest of the training, its
        files and model too, and its run stayed RUNNING for good."""
        holder = self.run_holder
        if final and not holder.end_tried:
            holder.end_tried = True
        elif time.monotonic() < holder.retry_at:
            return False
        holder.retry_at = time.monotonic() + RETRY_INTERVAL_S
        try:
            with http_limits(PROBE_LIMITS):
                if holder.run_id:
                    self.client.get_run(holder.run_id)
                else:  # no run started yet: any read of the store
                    self.client.search_experiments(max_results=1)
        except tracking_errors():  # refused, timed out, an error answer: not back
            return False
        holder.offline = holder.unreachable = False
        holder.recovering = True
        return True

    def _tag_incomplete(self, run_id: str) -> None:
        """Tag a run whose store failed during it ``tracking_incomplete`` (what was lost, and the first failure), so
        that its curves with a gap are not read as the whole training."""
        holder = self.run_holder
        if holder.failure is not None:
            self.client.set_tag(run_id, "tracking_incomplete",
                                f"{holder.lost_calls} logging call(s) lost; first: {holder.failure}"[:5000])

    def iteration_completed(self, engine: Engine) -> None:
        self._guarded("log the iteration's values", self._log_iteration, engine)

    def _log_iteration(self, engine: Engine) -> None:
        """MONAI's iteration log under :func:`logged_step`: a resume with epochs of another length renumbers the
        trainer's iterations, and the loss and lr curves would go on over the earlier attempts' points. MONAI's log
        takes its step from ``engine.state.iteration`` itself, so the offset is added where the metrics are
        logged."""
        self._step_offset = logged_step(engine) - engine.state.iteration
        try:
            super().iteration_completed(engine)
        finally:
            self._step_offset = 0

    def epoch_completed(self, engine: Engine) -> None:
        self._guarded("log the epoch's metrics", super().epoch_completed, engine)

    def probe_completed(self, report: Mapping[str, Any]) -> None:
        """Log a frozen-feature probe's fit (``--linear_probe true``) as a run of its own: it runs no engine, so the
        start, its scores (step 0: ``C``, ``k`` and each section's scalars, as ``linear_validation_macro_f1``), its
        files and model, and the end happen here, as a training's happen on its engine's events."""
        with http_limits():
            self._start(Engine(lambda engine, batch: None))
        scores = {key: value for key, value in report.items() if _is_scalar(value)}
        scores.update({f"{section}_{key}": value for section, values in report.items() if isinstance(values, Mapping)
                       for key, value in values.items() if _is_scalar(value)})
        self._guarded("log the probe's scores", self._log_metrics, scores, 0)
        self.complete()
        self.close()

    # ---------------------------------------------------------------------------------------------- completion
    def complete(self) -> None:
        # the run's end (a trainer's, an evaluation's) tries a store that failed at once: its files (metrics.json
        # holds every validation) and model then keep what its curves lost
        self._guarded("log the run's files and model", self._complete, final=self.close_on_complete)

    def _complete(self) -> None:
        if self.cur_run:
            run_id = self.cur_run.info.run_id
            self.log_new_artifacts(run_id)
            if self.network is not None and self.input_shape is not None:
                self.log_model(run_id)
        super().complete()

    def close(self) -> None:
        """End the run as FINISHED (tagged ``tracking_incomplete`` where the store failed during it), tried even
        after a store error earlier in the run (it may have passed: a server restarted), but after a server that
        could not be reached only once its health check answers (its retries would hold the end of the training
        for nothing); a run left RUNNING is said in a warning."""
        if self.run_holder.unreachable and self.cur_run and not self._store_back(final=True):
            logger.warning("MLflow: the server did not answer earlier; run %s is left RUNNING in the store",
                           self.cur_run.info.run_id)
            self.cur_run = None
        try:
            with http_limits():
                if self.cur_run:
                    self._tag_incomplete(self.cur_run.info.run_id)
                super().close()  # MONAI's: ends the run, then releases a local SQLite store whatever happened
        except tracking_errors() as e:
            logger.warning("MLflow: the run could not be ended (%s); the store shows it RUNNING",
                           one_line(str(e))[:300])
            self.cur_run = None

    def log_new_artifacts(self, run_id: str) -> None:
        """Log each file of ``artifact_paths`` that is new or changed since the handler was built (a folder's files
        under the folder's name, as ``log_artifacts`` lays them out)."""
        stale = 0
        for path in map(Path, self.artifact_paths):
            for file, stamp in file_stamps([path]).items():
                if self.stamps_before.get(file) == stamp:
                    stale += 1
                    continue
                folder = path.name / file.parent.relative_to(path) if path.is_dir() else None
                try:
                    self.client.log_artifact(run_id, str(file),
                                             artifact_path=None if folder is None else folder.as_posix())
                except OSError as e:  # this one file (removed or unreadable since): the others are still logged
                    logger.warning("MLflow: %s was not logged: %s", file, e)
        if stale:
            logger.info("MLflow: %d file(s) left by an earlier run in the output folders were not logged", stale)

    def log_model(self, run_id: str) -> None:
        """Log the network with ``mlflow.pytorch`` (signature and input example from a forward pass)."""
        import mlflow
        from mlflow.models import infer_signature

        model, source = self.model_to_log()
        self.client.set_tag(run_id, "logged_model", source)
        model = ReconstructionModel(model) if self.model_kind == "mae" else model
        device = next(model.parameters()).device
        # Batch of 2: MLflow exports with torch.export (pt2, no pickle), which fixes a batch dimension of size 1.
        example = torch.zeros(2, *self.input_shape)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            output = model(example.to(device)).float().cpu().numpy()
        model.train(was_training)
        signature = infer_signature(example.numpy(), output)
        mlflow.set_tracking_uri(self.client.tracking_uri)
        with mlflow.start_run(run_id=run_id):
            mlflow.pytorch.log_model(model.cpu() if device.type != "cpu" else model, name="model",
                                     signature=signature, input_example=example.numpy(),
                                     registered_model_name=self.registered_model_name, **pt2_model_options())
        if device.type != "cpu":
            model.to(device)

    def model_to_log(self) -> tuple[nn.Module, str]:
        """(the network with the weights of the run's best model, where it saved one; what they are, for the
        ``logged_model`` tag). The training's own network is left as it is."""
        network = getattr(self.network, "module", self.network)
        saver = self.best_model
        path = Path(saver.save_path) if saver is not None else None
        if saver is None or saver.best_epoch is None or not path.is_file():
            if saver is not None:
                logger.warning("MLflow: no best model was saved (no validation ran); the network as training left "
                               "it is logged")
            return network, "the network at the end of training"
        best = copy.deepcopy(network)
        best.load_state_dict(read_checkpoint(path)["model"])
        return best, f"best model, epoch {saver.best_epoch} ({saver.metric_name} {saver.best:.6g})"
