"""stop_signals_raise: a default-handled SIGTERM / SIGHUP / SIGUSR1 / SIGUSR2 becomes SystemExit(128 + signal) inside the block; an
ignored signal or a caller's own handler is kept; handlers are restored after the block (also on an exception); a
non-main thread changes nothing."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import torch

from monai_ext.io.signals import (
    STOP_SIGNALS,
    StopSignal,
    StopSignalLogFilter,
    is_stop_record,
    stop_signals_deferred,
    stop_signals_raise,
)

NAMES = ("SIGTERM", "SIGHUP")


def number_of(name: str) -> int:
    if not hasattr(signal, name):
        pytest.skip(f"{name} does not exist on this platform")
    return getattr(signal, name)


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    """Whatever a test sets for the stop signals is undone, so a stray signal can never end the test process."""
    saved = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def send_and_wait(number: int) -> None:
    """Send ``number`` to this process and give Python's handler time to run (it runs on the main thread)."""
    os.kill(os.getpid(), number)
    for _ in range(200):
        time.sleep(0.01)


@pytest.mark.parametrize("name", NAMES)
def test_default_signal_becomes_system_exit(name: str, restored_handlers: None) -> None:
    number = number_of(name)
    signal.signal(number, signal.SIG_DFL)
    with pytest.raises(SystemExit) as raised, stop_signals_raise():
        assert signal.getsignal(number) is not signal.SIG_DFL
        send_and_wait(number)
    assert raised.value.code == 128 + number
    assert signal.getsignal(number) is signal.SIG_DFL  # restored after the block


@pytest.mark.parametrize("name", NAMES)
def test_ignored_signal_stays_ignored(name: str, restored_handlers: None) -> None:
    number = number_of(name)
    signal.signal(number, signal.SIG_IGN)
    with stop_signals_raise():
        assert signal.getsignal(number) is signal.SIG_IGN
        os.kill(os.getpid(), number)  # ignored: nothing is raised and the process goes on
        time.sleep(0.05)
    assert signal.getsignal(number) is signal.SIG_IGN


@pytest.mark.parametrize("name", NAMES)
def test_callers_own_handler_is_kept(name: str, restored_handlers: None) -> None:
    number = number_of(name)
    received: list[int] = []

    def own(signum: int, frame: object) -> None:
        received.append(signum)

    signal.signal(number, own)
    with stop_signals_raise():
        assert signal.getsignal(number) is own
        os.kill(os.getpid(), number)
        for _ in range(200):
            if received:
                break
            time.sleep(0.01)
    assert received == [number]
    assert signal.getsignal(number) is own


@pytest.mark.parametrize("name", NAMES)
def test_handlers_restored_after_an_exception(name: str, restored_handlers: None) -> None:
    number = number_of(name)
    signal.signal(number, signal.SIG_DFL)
    with pytest.raises(KeyError), stop_signals_raise():
        assert signal.getsignal(number) is not signal.SIG_DFL
        raise KeyError("boom")
    assert signal.getsignal(number) is signal.SIG_DFL


def test_nothing_changes_in_a_non_main_thread(restored_handlers: None) -> None:
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_DFL)
    seen: dict[int, object] = {}
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with stop_signals_raise():
                seen.update({number: signal.getsignal(number) for number in STOP_SIGNALS})
        except BaseException as error:  # noqa: BLE001 - reported to the main thread below
            errors.append(error)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=10)
    assert errors == []
    assert seen and all(handler is signal.SIG_DFL for handler in seen.values())
    assert all(signal.getsignal(number) is signal.SIG_DFL for number in STOP_SIGNALS)


def test_ctrl_c_is_left_to_pythons_keyboard_interrupt() -> None:
    """Only the signals a scheduler or a closed terminal send are turned into SystemExit; SIGINT keeps its handler."""
    before = signal.getsignal(signal.SIGINT)
    with stop_signals_raise():
        assert signal.getsignal(signal.SIGINT) is before
    assert signal.SIGINT not in STOP_SIGNALS


@pytest.mark.parametrize("name", NAMES)
def test_a_stop_is_a_stop_signal_naming_the_signal(name: str, restored_handlers: None) -> None:
    """Handlers tell a stop from any other exit by its class (the training checkpointer writes its last epoch),
    and ignite's "terminating due to exception" line names the signal instead of a bare "143"."""
    number = number_of(name)
    signal.signal(number, signal.SIG_DFL)
    with pytest.raises(StopSignal) as raised, stop_signals_raise():
        send_and_wait(number)
    assert isinstance(raised.value, SystemExit) and raised.value.code == 128 + number
    assert raised.value.signum == number and str(raised.value) == f"stopped by {name}"


def test_only_the_records_repeating_a_stop_are_filtered() -> None:
    """A stop signal ends a run as planned: MONAI's StatsHandler logged its traceback and ignite an ERROR line."""
    stop = StopSignal(signal.SIGTERM)

    def record(message: str, error: BaseException | None = None) -> logging.LogRecord:
        exc_info = (type(error), error, None) if error is not None else None
        return logging.LogRecord("x", logging.ERROR, __file__, 1, message, None, exc_info)

    assert is_stop_record(record("Exception: 143", stop))
    assert is_stop_record(record(f"Engine run is terminating due to exception: {stop}"))
    assert not is_stop_record(record("Exception: 143", SystemExit(143)))
    assert not is_stop_record(record("Engine run is terminating due to exception: out of memory"))
    assert not is_stop_record(record("stopped by SIGTERM"))
    assert not StopSignalLogFilter().filter(record("Exception", stop))


@pytest.mark.parametrize("name", NAMES)
def test_a_stop_inside_a_deferred_write_is_raised_when_the_write_is_whole(name: str, restored_handlers: None) -> None:
    """A SIGTERM raised inside ``torch.save`` became the archive writer's RuntimeError: the checkpoint being written
    was lost and the run crashed with a traceback instead of stopping."""
    number = number_of(name)
    signal.signal(number, signal.SIG_DFL)
    written = []
    with pytest.raises(StopSignal) as raised, stop_signals_raise():
        with stop_signals_deferred():
            signal.raise_signal(number)
            written.append("whole")  # reached: the signal waits for the block's end
    assert written == ["whole"] and raised.value.signum == number


@pytest.mark.parametrize("name", NAMES)
def test_a_second_stop_is_ignored_while_the_first_is_handled(name: str, restored_handlers: None) -> None:
    """torchrun's agent forwards a SIGTERM after the scheduler's: raised again inside the stop's own checkpoint
    write, it lost that checkpoint."""
    number = number_of(name)
    signal.signal(number, signal.SIG_DFL)
    handled = []
    with pytest.raises(StopSignal), stop_signals_raise():
        try:
            signal.raise_signal(number)
        except StopSignal:
            signal.raise_signal(number)  # the second, while the first is handled: ignored
            handled.append("after the second")
            raise
    assert handled == ["after the second"]
    with pytest.raises(StopSignal), stop_signals_raise():  # a new block raises again
        signal.raise_signal(number)


@pytest.mark.parametrize("name", ["SIGUSR1", "SIGUSR2"])
def test_a_schedulers_warning_signal_stops_as_sigterm_does(name: str, restored_handlers: None) -> None:
    """SLURM's ``--signal=USR1@120`` (the time limit's warning, sent to every process of the job step, torchrun's
    workers included) ended a training at once by default: no checkpoint of the epochs since the last save, an
    MLflow run left RUNNING."""
    number = number_of(name)
    signal.signal(number, signal.SIG_DFL)
    with pytest.raises(StopSignal) as raised, stop_signals_raise():
        # checked before the signal is sent: unhandled, it would end the test process
        assert signal.getsignal(number) is not signal.SIG_DFL, f"{name} is not turned into a stop"
        send_and_wait(number)
    assert raised.value.code == 128 + number and str(raised.value) == f"stopped by {name}"
    assert signal.getsignal(number) is signal.SIG_DFL  # restored after the block


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="the kernel's handler mask is read on Linux")
def test_a_stack_dump_handler_registered_in_c_is_kept(restored_handlers: None, tmp_path) -> None:
    """``faulthandler.register(SIGUSR1)``, a common way to dump a hung training's stacks, is invisible to
    ``signal.getsignal`` (it reports the default): replaced by the stop handler, a dump request stopped the training,
    and the handler restored after the block was the default, so the next request killed the process."""
    import faulthandler

    number = number_of("SIGUSR1")
    signal.signal(number, signal.SIG_DFL)
    with open(tmp_path / "stacks.txt", "w") as dump:
        faulthandler.register(number, file=dump)
        try:
            with stop_signals_raise():
                assert signal.getsignal(number) is signal.SIG_DFL  # not replaced
                send_and_wait(number)  # dumps the stacks; raises nothing
            send_and_wait(number)  # still the dump handler after the block: the process lives on
        finally:
            faulthandler.unregister(number)
    assert (tmp_path / "stacks.txt").read_text().count("Current thread") == 2


class _SignalsItself(torch.utils.data.Dataset):
    """Three items; reading the second sends ``number`` to the reading process (a DataLoader worker)."""

    def __init__(self, number: int) -> None:
        self.number = number

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> int:
        if index == 1:
            os.kill(os.getpid(), self.number)
            time.sleep(0.05)  # Python runs the handler at once; a default-handled signal would end the worker
        return index


@pytest.mark.parametrize("name", ["SIGUSR1", "SIGHUP"])  # SIGTERM: PyTorch's handler in C ends its workers
def test_a_signal_to_the_whole_job_leaves_the_data_loader_workers_to_the_main_process(name: str,
                                                                                      restored_handlers: None) -> None:
    """SLURM's ``scancel --signal=USR1`` reaches every process of the job: DataLoader workers forked inside the block
    had the stop handler, raised the stop themselves and exited (138), and the main process failed with "DataLoader
    worker exited unexpectedly" instead of stopping. The workers now leave the stop to the main process."""
    number = number_of(name)
    signal.signal(number, signal.SIG_DFL)
    loader = torch.utils.data.DataLoader(_SignalsItself(number), batch_size=None, num_workers=1,
                                         multiprocessing_context="fork")
    with stop_signals_raise():
        assert list(loader) == [0, 1, 2]
