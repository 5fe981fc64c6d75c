"""Settings of the shared trainer base, as YAML and a ``monai.bundle`` command line give them."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch

from monai_ext.engines import base
from monai_ext.engines.base import effective_precision, gradient_norm_limit, usable_device


@pytest.mark.parametrize("given, limit", [
    (1.0, 1.0), ("3", 3.0), (2, 2.0), (np.float32(0.5), 0.5), (None, None), ("null", None), ("None", None),
    (0, None), ("0", None), (0.0, None),          # 0 is no clipping, as documented: not refused as "not positive"
])
def test_clip_grad_norm_from_yaml_or_the_command_line(given, limit) -> None:
    """``--clip_grad_norm null`` (no clipping) arrives as the text 'null': torch would fail to read it as a float."""
    assert gradient_norm_limit(given) == limit


@pytest.mark.parametrize("given, match", [
    ("high", "must be a number"), ([1.0], "must be a number"),
    (-1, "must be at least 0"), (float("nan"), "must be at least 0"),
    (True, "must be a gradient-norm limit, not true or false"),    # YAML `clip_grad_norm: true` once clipped at 1.0
    (False, "must be a gradient-norm limit, not true or false"),
    (np.bool_(True), "must be a gradient-norm limit, not true or false"),
])
def test_other_clip_grad_norms_are_refused_naming_the_value(given, match) -> None:
    with pytest.raises(ValueError, match=re.escape(f"clip_grad_norm {match}") + f".*got {re.escape(repr(given))}$"):
        gradient_norm_limit(given)


@pytest.mark.parametrize("device, gpus, match", [
    ("cuda", 0, r"device 'cuda': this machine has no usable CUDA device .*use --device cpu or leave device unset$"),
    ("cuda:1", 0, r"device 'cuda:1': this machine has no usable CUDA device"),
    ("cuda:2", 2, r"device 'cuda:2': this machine has 2 CUDA device\(s\), numbered from 0$"),
    ("gpu", 0, r"device must name a torch device such as 'cpu' or 'cuda:0', got 'gpu'$"),
])
def test_a_device_this_machine_lacks_is_refused_in_one_line(device, gpus, match, monkeypatch) -> None:
    """``--device cuda`` on a laptop (as run_label_server.sh suggests) ended in torch's "not compiled with CUDA"
    from deep inside a config expression."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    with pytest.raises(ValueError, match=match):
        usable_device(device, "bf16")


@pytest.mark.parametrize("device, backend, match", [
    ("mps", "mps", r"device 'mps': this machine has no usable MPS \(Apple GPU\) device .*use --device cpu"),
    ("xpu", "xpu", r"device 'xpu': this machine has no usable XPU \(Intel GPU\) device .*use --device cpu"),
    ("xpu:0", "xpu", r"device 'xpu:0': this machine has no usable XPU"),
])
def test_an_mps_or_xpu_device_this_machine_lacks_is_refused_in_one_line(device, backend, match, monkeypatch) -> None:
    """Only CUDA was checked: ``--device mps`` on Linux passed and failed deep inside the config."""
    if backend == "mps":
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    else:
        monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    with pytest.raises(ValueError, match=match):
        usable_device(device, "bf16")


@pytest.mark.parametrize("device, refused", [
    ("mps", None), ("xpu", None), ("xpu:1", None),
    ("mps:1", r"device 'mps:1': this machine has 1 MPS device\(s\), numbered from 0$"),
    ("xpu:2", r"device 'xpu:2': this machine has 2 XPU device\(s\), numbered from 0$"),
])
def test_an_mps_or_xpu_device_this_machine_has_is_accepted(device, refused, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: True)
    monkeypatch.setattr(torch.xpu, "device_count", lambda: 2)
    if refused is None:
        assert usable_device(device, "fp32") == torch.device(device)
    else:
        with pytest.raises(ValueError, match=refused):
            usable_device(device, "fp32")


@pytest.mark.parametrize("device, precision, computed", [
    ("cpu", "bf16", "fp32"), (torch.device("cpu"), "fp32", "fp32"), ("cuda", "bf16", "bf16"),
    (torch.device("cuda", 1), "bf16", "bf16"), ("cuda:0", "fp32", "fp32"), ("mps", "bf16", "fp32"),
])
def test_the_effective_precision_is_bf16_only_for_bf16_on_cuda(device, precision, computed) -> None:
    """What the MLflow tracking logs as the run's precision: a CPU run asked for bf16 computes in float32."""
    assert effective_precision(device, precision) == computed


@pytest.mark.parametrize("device, precision, match", [
    ("cpu", "fp16", "precision must be one of"), ("gpu", "bf16", "device must name a torch device")])
def test_the_effective_precision_of_a_wrong_setting_is_refused(device, precision, match) -> None:
    with pytest.raises(ValueError, match=match):
        effective_precision(device, precision)


def test_the_device_and_the_precision_it_really_gets_are_said_once(monkeypatch, caplog) -> None:
    """Without CUDA the bundles trained on the CPU in float32 with bf16 asked for, and not one log line said so."""
    monkeypatch.setattr(base, "_ANNOUNCED", set())
    with caplog.at_level(logging.INFO, logger="monai_ext.engines.base"):
        assert usable_device("cpu", "bf16") == torch.device("cpu")
        usable_device(torch.device("cpu"), "bf16")
        usable_device("cpu", "fp32")
    said = [r.getMessage() for r in caplog.records]
    assert said[0].startswith("running on cpu in float32 (bf16 autocast runs on CUDA only") and len(said) == 2
    assert said[1] == "running on cpu in fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        usable_device("cpu", "fp16")


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_a_stop_signal_during_training_runs_the_exception_handlers(name) -> None:
    """A queue's time limit (SIGTERM) ended the process at once: the MLflow run, marked FAILED by an exception
    handler, stayed RUNNING. Now the signal raises SystemExit(128 + signal) inside the run, and the default handling
    is back afterwards."""
    import os
    import signal

    from ignite.engine import Events

    from tests.engines.test_nonfinite_guard import FINITE, run

    number = getattr(signal, name)
    _, trainer = run([FINITE, FINITE, FINITE], max_nonfinite_steps=1)
    seen = []

    def send_signal(_) -> None:
        # sent only where it is caught: with default handling it would end the test process itself
        assert signal.getsignal(number) is not signal.SIG_DFL, f"{name} would end the training at once"
        os.kill(os.getpid(), number)

    def exception_handler(_, error: BaseException) -> None:
        seen.append(error)
        raise error

    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=1), send_signal)
    trainer.add_event_handler(Events.EXCEPTION_RAISED, exception_handler)
    with pytest.raises(SystemExit) as stopped:
        trainer.run()
    assert stopped.value.code == 128 + number and isinstance(seen[0], SystemExit)
    assert trainer.state.iteration == 1 and signal.getsignal(number) is signal.SIG_DFL


@pytest.mark.parametrize("signal_name, said", [("SIGTERM", "Terminated"), ("SIGHUP", "Hangup")])
def test_a_data_loader_worker_killed_by_a_job_wide_stop_is_that_stop(signal_name, said) -> None:
    """A job-wide SIGTERM reaches the DataLoader workers too, and PyTorch ends them: the main process often met
    "DataLoader worker (pid N) is killed by signal: Terminated" before its own signal, and the stopped training ended
    as a failure. The exception handlers now get the stop, and the main process's own signal after it is ignored."""
    import os
    import signal

    from ignite.engine import Events

    from monai_ext.io.signals import StopSignal
    from tests.engines.test_nonfinite_guard import FINITE, run

    number = getattr(signal, signal_name)
    _, trainer = run([FINITE, FINITE, FINITE], max_nonfinite_steps=1)
    seen = []

    def worker_killed(_) -> None:  # what PyTorch raises in the main process (its C handler's message)
        raise RuntimeError(f"DataLoader worker (pid 4242) is killed by signal: {said}. ")

    def exception_handler(_, error: BaseException) -> None:
        seen.append(error)
        os.kill(os.getpid(), number)  # the main process's own signal, arriving after: the same stop, ignored
        raise error

    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=1), worker_killed)
    trainer.add_event_handler(Events.EXCEPTION_RAISED, exception_handler)
    with pytest.raises(StopSignal) as stopped:
        trainer.run()
    assert stopped.value.code == 128 + number and isinstance(seen[0], StopSignal)
    assert isinstance(stopped.value.__cause__, RuntimeError) and signal.getsignal(number) is signal.SIG_DFL


def test_a_data_loader_worker_killed_while_the_main_process_waits_on_it_is_that_stop() -> None:
    """The main process waiting on the workers' queue (a training bound by its data) gets PyTorch's "DataLoader worker
    (pid(s) N) exited unexpectedly", raised from the SIGCHLD handler's "is killed by signal: Terminated": the same
    stop, not a failure."""
    import signal

    from ignite.engine import Events

    from monai_ext.io.signals import StopSignal
    from tests.engines.test_nonfinite_guard import FINITE, run

    _, trainer = run([FINITE, FINITE, FINITE], max_nonfinite_steps=1)

    def worker_killed(_) -> None:  # torch.utils.data.dataloader._try_get_data's re-raise
        try:
            raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Terminated. ")
        except RuntimeError as e:
            raise RuntimeError("DataLoader worker (pid(s) 4242) exited unexpectedly") from e

    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=1), worker_killed)
    with pytest.raises(StopSignal) as stopped:
        trainer.run()
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "exited unexpectedly" in str(stopped.value.__cause__)


def test_a_data_loader_worker_killed_during_validation_is_that_stop_for_the_validator_too() -> None:
    """The validation of a training meets the worker's death in the evaluator, whose handlers (the validator's MLflow
    handler, marking the shared run FAILED) ran before the trainer took it for the stop: they see the stop too."""
    import signal

    from ignite.engine import Events

    from monai_ext.engines.classification import ClassificationEvaluator
    from monai_ext.io.signals import StopSignal
    from tests.engines.test_nonfinite_guard import FINITE, run

    _, trainer = run([FINITE], max_nonfinite_steps=1)
    evaluator = ClassificationEvaluator(
        device=torch.device("cpu"), network=trainer.network, decollate=False,
        val_data_loader=[{"image": torch.zeros(2, 1, 4, 4), "label": torch.tensor([0, 1])}])
    seen = []

    def handler(_, error: BaseException) -> None:
        seen.append(type(error))
        raise error

    def worker_killed(_) -> None:
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Terminated. ")

    evaluator.add_event_handler(Events.EXCEPTION_RAISED, handler)
    evaluator.add_event_handler(Events.ITERATION_COMPLETED(once=1), worker_killed)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run(trainer.state.epoch))
    with pytest.raises(StopSignal) as stopped:
        trainer.run()
    assert stopped.value.code == 128 + signal.SIGTERM and set(seen) == {StopSignal}  # ignite hands it on twice


def test_a_data_loader_worker_killed_otherwise_is_the_error_it_is() -> None:
    """A worker killed by SIGKILL (the out-of-memory killer) or exiting stays an error: no stop stands behind it."""
    from ignite.engine import Events

    from tests.engines.test_nonfinite_guard import FINITE, run

    _, trainer = run([FINITE, FINITE], max_nonfinite_steps=1)

    def worker_killed(_) -> None:
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")

    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=1), worker_killed)
    with pytest.raises(RuntimeError, match="Killed"):
        trainer.run()


@pytest.mark.parametrize("iteration, epoch_length, interval, logged", [
    (10, 25, 10, True), (11, 25, 10, False), (25, 25, 10, True),  # an epoch's last iteration
    (3, 3, 10, True), (2, 3, 10, False),                            # epochs shorter than the interval: their ends
])
def test_logs_loss_is_every_interval_and_each_epochs_end(iteration, epoch_length, interval, logged) -> None:
    from types import SimpleNamespace

    from monai_ext.engines.base import logs_loss

    engine = SimpleNamespace(state=SimpleNamespace(iteration=iteration, epoch_length=epoch_length))
    assert logs_loss(engine, interval) is logged


def test_every_bundles_mlflow_loss_curve_under_torchrun_keeps_to_the_averaged_iterations() -> None:
    """The segmentation bundle logged every iteration under torchrun (rank 0's own loss 9 times in 10) and the others
    none of an epoch shorter than log_interval; all three now log where the loss is averaged over ranks."""
    import yaml

    from tests.bundles.helpers import REPO

    filters = {name: yaml.safe_load((REPO / "bundles" / name / "configs" / "mlflow_tracking.yaml").read_text())
               ["configs"]["trainer"]["iteration_log"] for name in ("usf_mae_pretrain", "usf_mae_classify",
                                                                     "usf_mae_segment")}
    assert all("monai_ext.engines.base.logs_loss(engine, @log_interval)" in text for text in filters.values()), filters


@pytest.mark.parametrize("micro_batches, accumulation", [(5, 2), (7, 3), (4, 4), (3, 1)])
def test_every_optimiser_step_follows_the_mean_gradient_of_its_window(micro_batches, accumulation) -> None:
    """An epoch whose length ``accumulation_steps`` does not divide ends on a shorter window. Its loss was divided by
    ``accumulation_steps``, so that step took a fraction of the gradient (half of it for 5 micro-batches by 2)."""
    import torch
    from torch import nn

    from monai_ext.engines.classification import ClassificationTrainer
    from tests.engines.test_nonfinite_guard import FINITE, batch

    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    reference = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    batches = [batch(FINITE, i) for i in range(micro_batches)]
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    trainer = ClassificationTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=batches, network=network, optimizer=optimizer,
        loss_function=nn.CrossEntropyLoss(), precision="fp32", accumulation_steps=accumulation, clip_grad_norm=None,
    )
    windows = [list(range(start, min(start + accumulation, micro_batches)))
               for start in range(0, micro_batches, accumulation)]
    used, expected = [], []

    def keep_gradient(opt, args, kwargs) -> None:
        used.append(torch.cat([p.grad.flatten() for p in network.parameters()]))
        # the reference: the gradient of the mean loss over the window's micro-batches, at the same weights
        reference.load_state_dict(network.state_dict())
        window = windows[len(used) - 1]
        loss = sum(nn.functional.cross_entropy(reference(batches[i]["image"]), batches[i]["label"]) for i in window)
        grads = torch.autograd.grad(loss / len(window), list(reference.parameters()))
        expected.append(torch.cat([g.flatten() for g in grads]))

    optimizer.register_step_pre_hook(keep_gradient)
    trainer.run()
    assert len(used) == len(windows)
    for step, (got, want) in enumerate(zip(used, expected)):
        assert torch.allclose(got, want, atol=1e-6), f"step {step} of windows {windows}: {got.norm()} vs {want.norm()}"


@pytest.mark.parametrize("accumulation, epoch_length, windows", [
    (1, 3, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]),
    (2, 3, [(1, 2), (1, 2), (3, 3), (4, 5), (4, 5), (6, 6)]),      # each epoch ends on a shorter window
    (3, 3, [(1, 3), (1, 3), (1, 3), (4, 6), (4, 6), (4, 6)]),
    (4, 3, [(1, 3), (1, 3), (1, 3), (4, 6), (4, 6), (4, 6)]),      # a window never crosses an epoch's end
    (2, None, [(1, 2), (1, 2), (3, 4), (3, 4), (5, 6), (5, 6)]),   # no epoch length (an iterable data source)
])
def test_the_accumulation_window_of_each_iteration(accumulation, epoch_length, windows) -> None:
    """The trainer's optimiser steps and the checkpointer's iteration-level saves both follow these windows."""
    from types import SimpleNamespace

    from monai_ext.engines.base import accumulation_window

    engine = SimpleNamespace(accumulation_steps=accumulation, state=SimpleNamespace(epoch_length=epoch_length))
    found = []
    for iteration in range(1, 7):
        engine.state.iteration = iteration
        found.append(accumulation_window(engine))
    assert found == windows


@pytest.mark.parametrize("limit", [0.5, None])
def test_clip_grad_norm_bounds_the_gradient_each_step_takes(limit) -> None:
    """``clip_grad_norm`` was read but a step could still follow the full gradient: a batch of large pixel values
    (gradient norm in the hundreds) moved the weights as far as it liked. With no limit the gradient is untouched."""
    import torch
    from torch import nn

    from monai_ext.engines.classification import ClassificationTrainer
    from tests.engines.test_nonfinite_guard import FINITE, batch

    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    reference = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    batches = [{**b, "image": b["image"] * 1000.0} for b in (batch(FINITE, i) for i in range(2))]
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-4)
    trainer = ClassificationTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=batches, network=network, optimizer=optimizer,
        loss_function=nn.CrossEntropyLoss(), precision="fp32", clip_grad_norm=limit,
    )
    norms, full = [], []

    def keep_norm(opt, args, kwargs) -> None:
        norms.append(float(torch.cat([p.grad.flatten() for p in network.parameters()]).norm()))
        reference.load_state_dict(network.state_dict())
        step = batches[len(norms) - 1]
        loss = nn.functional.cross_entropy(reference(step["image"]), step["label"])
        full.append(float(torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(reference.parameters()))])
                          .norm()))

    optimizer.register_step_pre_hook(keep_norm)
    trainer.run()
    assert len(norms) == 2 and min(full) > 10, full  # the batches do have large gradients
    if limit is None:
        assert norms == pytest.approx(full, rel=1e-5)
    else:
        assert all(norm <= limit * (1 + 1e-5) for norm in norms), norms
        assert norms == pytest.approx([limit] * 2, rel=1e-4)  # scaled down to the limit, not zeroed
