"""MLflow tracking for both bundles, on top of MONAI's ``--tracking`` mechanism and its ``MLFlowHandler``.

``python -m monai.bundle run ... --tracking bundles/<bundle>/configs/mlflow_tracking.yaml`` patches the bundle with
:class:`ProjectMLFlowHandler` on the trainer and the validator. Beyond MONAI's handler it:

* starts a fresh run for a training process (MONAI's handler would append to any unfinished run of the
  experiment, such as one left by a crash) and shares it with the validator through a :class:`RunHolder`; a run
  resumed from its checkpoints (``--resume true``) continues the MLflow run recorded beside them, so its curves go
  on from the saved step;
* ends a crashed run as FAILED;
* checks a remote tracking server before training starts, with a clear error;
* logs the flattened resolved config, a hash of the data lists, git commit and bundle version tags, the pictures and
  metric files, the best checkpoint, and the model through ``mlflow.pytorch`` with a signature and input example
  (optionally registered);
* logs nothing on ranks other than 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler
from torch import nn

from monai_ext.engines.distributed import is_main_process
from monai_ext.handlers.checkpointing import list_checkpoints
from monai_ext.io.atomic import atomic_write_text
from monai_ext.io.settings import is_unset

logger = logging.getLogger(__name__)
PARAM_VALUE_LIMIT = 500


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


def sqlite_artifact_location(tracking_uri: str) -> str | None:
    """Where the runs of a local SQLite store keep their artifacts: ``mlruns`` beside the database, where MONAI's
    ``MLFlowHandler`` puts a bundle run's; None for other stores (a server decides itself).

    Left to MLflow, an experiment created on a SQLite store keeps its artifacts in ``./mlruns`` of whichever folder
    the command ran in, apart from the database a user was told to look in.
    """
    from monai.utils import path_to_uri

    if not str(tracking_uri).startswith("sqlite:///"):
        return None
    return path_to_uri(Path(str(tracking_uri)[len("sqlite:///"):]).parent / "mlruns")


def check_tracking_server(tracking_uri: str | None, timeout: float = 5.0) -> None:
    """Raise ``ConnectionError`` now, before any training, when an http(s) tracking server does not answer."""
    if not tracking_uri or not str(tracking_uri).startswith(("http://", "https://")):
        return
    import urllib.request

    url = str(tracking_uri).rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # the user's own server
            if response.status != 200:
                raise OSError(f"HTTP {response.status}")
    except Exception as e:  # URLError, timeouts, refused connections
        raise ConnectionError(
            f"MLflow tracking server {tracking_uri!r} is unreachable ({e}); start it, fix --tracking_uri / "
            "MLFLOW_TRACKING_URI, or run without --tracking"
        ) from e


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
        if isinstance(value, Mapping):
            params.update(flatten_config(value, name))
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            params[name] = f"<{len(value)} items>"
        else:
            params[name] = str(value)[:PARAM_VALUE_LIMIT]
    return {k.replace("#", "."): v for k, v in params.items()}


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
        **kwargs: ``MLFlowHandler`` arguments (tracking_uri, experiment_name, run_name, ...).
    """

    def __init__(
        self,
        run_holder: RunHolder,
        config_dir: str | None = None,
        datalists: Sequence[Sequence[Mapping[str, Any]]] | None = None,
        tags: Mapping[str, Any] | None = None,
        network: nn.Module | None = None,
        input_shape: Sequence[int] | None = None,
        model_kind: str = "classifier",
        artifact_paths: Sequence[str] | None = None,
        resumed: bool = False,
        registered_model_name: str | None = None,
        record_run: bool = False,
        **kwargs: Any,
    ) -> None:
        check_tracking_server(kwargs.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI"))
        if is_unset(kwargs.get("run_name")):  # --run_name null arrives as text: MLflow would name the run "null"
            kwargs["run_name"] = None
        super().__init__(**kwargs)
        self.run_holder = run_holder
        self.config_dir = config_dir
        self.datalists = datalists
        self.tags = {k: str(v) for k, v in (tags or {}).items()}
        self.network = network
        self.input_shape = tuple(input_shape) if input_shape else None
        self.model_kind = model_kind
        self.artifact_paths = [str(p) for p in artifact_paths or []]
        # file -> modification stamp before this run wrote anything; compared, not timed, so clock skew on a shared
        # file system cannot hide a file of this run or pass off an old one as new
        self.stamps_before: dict[Path, tuple[int, int, int]] = {} if resumed else file_stamps(self.artifact_paths)
        self.registered_model_name = None if is_unset(registered_model_name) else registered_model_name
        self.record_run = record_run

    # ------------------------------------------------------------------------------------------------ run handling
    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        # The failure handler must run first: other handlers (StatsHandler) re-raise and would stop the chain.
        # ignite has no public way to reorder handlers, so the entry it just added is moved to the front.
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._mark_failed)
        handlers = engine._event_handlers[Events.EXCEPTION_RAISED]
        handlers.insert(0, handlers.pop())

    def start(self, engine: Engine) -> None:
        if not self.cur_run:
            self._set_experiment()
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
        super().start(engine)
        params: dict[str, str] = {}
        # MONAI names the file after the time; its own "save_execute_config" reference is broken when output_dir
        # is overridden with a plain path, so the newest file in the folder is taken.
        configs = sorted(Path(self.config_dir).glob("config_*.json"), key=os.path.getmtime) if self.config_dir else []
        if configs:
            params.update(flatten_config(json.loads(configs[-1].read_text())))
            if configs[-1].as_posix() not in self.artifact_paths:
                self.artifact_paths.append(configs[-1].as_posix())
        if self.datalists is not None:
            params["dataset_hash"] = datalist_hash(self.datalists)
            params["dataset_sizes"] = ",".join(str(len(d)) for d in self.datalists)
        logged = self.client.get_run(self.cur_run.info.run_id).data.params
        params = {k: v for k, v in params.items() if k not in logged}
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._log_params(dict(items[i : i + 100]))

    def _new_run(self) -> str:
        tags = {"git_commit": git_commit()}
        if self.run_holder.parent_run_id:
            tags["mlflow.parentRunId"] = self.run_holder.parent_run_id
        return self.client.create_run(self.experiment.experiment_id, run_name=self.run_name, tags=tags).info.run_id

    def _continued_run(self) -> str | None:
        """Reopen the run this process resumes (a crashed run ended FAILED or was left RUNNING by a kill)."""
        run_id = self.run_holder.recorded_run(self.client, self.experiment.experiment_id)
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            resumes = int(self.client.get_run(run_id).data.tags.get("resumes", "0")) + 1
            self.client.set_tag(run_id, "resumes", str(resumes))
            logger.info("MLflow: continuing run %s (resume %d)", run_id, resumes)
        return run_id

    def _log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Log scalar metrics only: the classification report's per-class tables, confusion matrix and ROC points
        are artifacts (the report JSON and PNGs), not metric series."""
        scalars = {k: float(v) for k, v in metrics.items() if _is_scalar(v)}
        if scalars:
            super()._log_metrics(scalars, step)

    def _mark_failed(self, engine: Engine, error: BaseException) -> None:
        if self.cur_run and is_main_process():
            self.client.set_terminated(self.cur_run.info.run_id, status="FAILED")
            logger.error("MLflow run %s ended as FAILED: %s", self.cur_run.info.run_id, error)
            self.cur_run = None
        raise error

    # ---------------------------------------------------------------------------------------------- completion
    def complete(self) -> None:
        if self.cur_run:
            run_id = self.cur_run.info.run_id
            self.log_new_artifacts(run_id)
            if self.network is not None and self.input_shape is not None:
                self.log_model(run_id)
        super().complete()

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
                self.client.log_artifact(run_id, str(file), artifact_path=None if folder is None else folder.as_posix())
        if stale:
            logger.info("MLflow: %d file(s) left by an earlier run in the output folders were not logged", stale)

    def log_model(self, run_id: str) -> None:
        """Log the network with ``mlflow.pytorch`` (signature and input example from a forward pass)."""
        import mlflow
        from mlflow.models import infer_signature

        model = getattr(self.network, "module", self.network)
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
