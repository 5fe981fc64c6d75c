"""One line and exit code 2 for a user's mistake under ``python -m monai.bundle run``, as ``python -m monai_ext``
gives: ``usf_mae_classify: resume must be true or false, got 'maybe'`` instead of MONAI's wrapped traceback.

The bundle configs import this module first among their imports; importing it installs the hook, and only in a
``python -m monai.bundle`` process (also under ``torchrun``), never in a program that runs bundles in-process (the
``monai_ext`` command line, the tests). A user error is one of :data:`~monai_ext.io.errors.USER_ERRORS` in the
chain of causes, raised by this package's validation or MONAI's bundle config machinery
(:func:`~monai_ext.io.errors.user_error_in`); anything else, a library's ``ValueError`` included, keeps its full
traceback, and ``MONAI_EXT_TRACEBACK=1`` keeps it for every error (:func:`traceback_wanted`; ``0`` means no).
"""

from __future__ import annotations

import atexit
import difflib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TextIO

from monai_ext.engines.distributed import is_distributed
from monai_ext.io.errors import one_line, user_error_in
from monai_ext.io.signals import is_stop_record


def bundle_name(argv: Sequence[str]) -> str:
    """The bundle a ``monai.bundle run`` command line runs: the folder above ``configs/`` of its first config file
    (``--config_file`` may be one path or MONAI's list syntax), else ``"monai.bundle run"``."""
    for index, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--config_file=") else None
        if arg == "--config_file" and index + 1 < len(argv):
            value = argv[index + 1]
        first = _config_paths(value or "")
        if first:
            return Path(first[0]).resolve().parent.parent.name
    return "monai.bundle run"


def report_user_error(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    """``sys.excepthook``: one line on stderr for a user error, then exit code 2; the usual traceback else."""
    cause = user_error_in(error)
    message = one_line(str(cause)) if cause is not None else (setting_typed_as_number(error, sys.argv)
                                                               or export_of_another_network(error, sys.argv)
                                                               or compile_without_a_compiler(error))
    if message is None or traceback_wanted():
        sys.__excepthook__(kind, error, trace)
        return
    print(f"{rank_prefix()}{bundle_name(sys.argv)}: {message} (MONAI_EXT_TRACEBACK=1 shows where)",
          file=error_stream())
    exit_now(2)


def error_stream() -> TextIO:
    """Where the one line goes: ``sys.stderr``, or the process's own stderr once ``torch.distributed`` has started.

    ``init_process_group`` wraps ``sys.excepthook`` in one that points ``sys.stderr`` at a buffer while the hook
    runs and prints the buffer, rank-prefixed, after it returns; this hook leaves with ``os._exit``, so under
    torchrun the line went into the buffer and was never shown (exit code 2, no reason).
    """
    return (sys.__stderr__ or sys.stderr) if is_distributed() else sys.stderr


def rank_prefix() -> str:
    """``"[rank1]: "`` in a distributed run (as torch prefixes its own tracebacks), else nothing."""
    if not is_distributed():
        return ""
    import torch.distributed as dist

    return f"[rank{dist.get_rank()}]: "


def export_of_another_network(error: BaseException, argv: Sequence[str]) -> str | None:
    """What to say when ``ckpt_export --ckpt_file F`` loads F's weights into a network built from another file:
    ``inference.yaml`` builds ``network_def`` from ``--ckpt_path`` (the bundle's ``models/model.pt`` by default), so a
    model.pt elsewhere of another size or class count gives torch's key-by-key size mismatch. None for any other
    error or command.
    """
    if "ckpt_export" not in argv or _option(argv, "--ckpt_path") is not None:
        return None
    given, default = _option(argv, "--ckpt_file"), _default_checkpoint(argv)
    if given is None or default is None or os.path.realpath(given) == os.path.realpath(default):
        return None  # the network was built from that very file: the mismatch is another setting's, keep the trace
    link, seen = error, []
    while link is not None and link not in seen:
        if isinstance(link, RuntimeError) and str(link).startswith("Error(s) in loading state_dict") and \
                "size mismatch" in str(link):
            return ("--ckpt_file's weights do not fit the network that inference.yaml builds from --ckpt_path (the "
                    "bundle's models/model.pt when not given): give --ckpt_path the same file as --ckpt_file")
        seen.append(link)
        link = link.__cause__ or link.__context__
    return None


def compile_without_a_compiler(error: BaseException) -> str | None:
    """What to say when ``--compile true`` meets a machine with no working C++ compiler: torch's inductor raises
    at the first iteration, after the data is prepared, with some 390 lines of log. None for any other error."""
    link, seen = error, []
    while link is not None and link not in seen:
        if "No working C++ compiler found" in str(link) or type(link).__name__ == "InvalidCxxCompiler":
            return ("--compile true needs a working C++ compiler for torch.compile's inductor backend: install one "
                    "(e.g. g++) or run with --compile false")
        seen.append(link)
        link = link.__cause__ or link.__context__
    return None


def _option(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` on a command line, None when not given."""
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _default_checkpoint(argv: Sequence[str]) -> str | None:
    """The file an inference config builds its network from without ``--ckpt_path``: ``<ckpt_dir>/model.pt``,
    ``--ckpt_dir`` defaulting to ``<bundle_root>/models`` and the bundle root to the folder above ``configs/``."""
    ckpt_dir = _option(argv, "--ckpt_dir")
    if ckpt_dir is None:
        root = _option(argv, "--bundle_root")
        if root is None:
            configs = _config_paths(_option(argv, "--config_file") or "")
            if not configs:
                return None
            root = str(Path(configs[0]).resolve().parent.parent)
        ckpt_dir = os.path.join(root, "models")
    return os.path.join(ckpt_dir, "model.pt")


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_CONFIG_REF = re.compile(r"__local_refs\['([^']+)'\]")
#: The TypeErrors of a number where text belongs: joined to a path (``2024 + '/eval'``, ``'runs/' + 2024``) or
#: given to a path function (``Path(2024)``); a number compared or multiplied with text is another mistake.
_NUMBER_AS_TEXT = re.compile(r"unsupported operand type\(s\) for \+: '(int|float)' and 'str'|"
                             r"can only concatenate str \(not \"(int|float)\"\) to str|"
                             r"expected str, bytes or os\.PathLike object, not (int|float)")
#: Settings that hold a path or a name: what a number typed on the command line can only be by mistake.
_TEXT_SETTING = re.compile(r"(^|#)(\w+_(dir|root|file|files|path|name)|run_name)$")


def setting_typed_as_number(error: BaseException, argv: Sequence[str]) -> str | None:
    """What to say when a config expression failed on a number where text belongs: ``--output_dir 2024`` reaches
    the config as the int 2024 (the command line is read as Python literals) and ``$@output_dir + '/eval'`` then
    fails with a ``TypeError`` deep in MONAI (or a component given ``output_dir: "@output_dir"`` does). The path and
    name settings (``*_dir``, ``*_root``, ``*_file``, ``*_path``, ``*_name``) that the failed expression or
    component uses and that the command line gave as numbers are named,
    with the quoting that keeps them text; None for any other error, which keeps its traceback (a number where a
    number belongs, beside text where a number belongs, must not be blamed).

    Args:
        error: the exception that reached the hook.
        argv: the command line (``--name value`` or ``--name=value``).
    """
    chain, link = [], error
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    numbers = dict(_numbers_given(argv))
    for outer, inner in zip(chain, chain[1:]):
        if isinstance(inner, TypeError) and _NUMBER_AS_TEXT.search(str(inner)):
            named = [name for name in _settings_used(str(outer)) if name in numbers and _TEXT_SETTING.search(name)]
            if named:
                given = ", ".join(f"--{name} {numbers[name]}" for name in named)
                quoted = ", ".join(f"--{name} \"'{numbers[name]}'\"" for name in named)
                return (f"{given}: read as a number where a name or path belongs; a name made of digits needs "
                        f"quotes that reach Python: {quoted}")
    return None


def _settings_used(failure: str) -> list[str]:
    """The settings a failed config item used, from MONAI's message: the references of an expression (``Failed to
    evaluate ConfigExpression: $@output_dir + ...``), or the keywords of a component (``Failed to instantiate
    component '...' with keywords: output_dir,...``: a setting passed on as ``output_dir: "@output_dir"``)."""
    if failure.startswith("Failed to evaluate ConfigExpression"):
        return list(dict.fromkeys(_CONFIG_REF.findall(failure)))
    keywords = re.match(r"Failed to instantiate component '[^']*' with keywords: ([^\n]*)", failure)
    return [word.strip() for word in keywords.group(1).split(",")] if keywords else []


def _numbers_given(argv: Sequence[str]) -> list[tuple[str, str]]:
    """(setting, value) of each ``--setting value`` whose value the command line reads as a number."""
    pairs = []
    for index, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        name, equals, value = arg[2:].partition("=")
        if not equals and index + 1 < len(argv):
            value = argv[index + 1]
        if _NUMBER.fullmatch(value.strip()) or _read_as_number(value.strip()):
            pairs.append((name, value.strip()))
    return pairs


def _read_as_number(value: str) -> bool:
    """Whether fire reads ``value`` as a number (``2024_01``, ``0x10`` and ``+5`` as well as ``2024``)."""
    from fire.parser import DefaultParseValue

    try:
        parsed = DefaultParseValue(value)
    except Exception:  # noqa: BLE001 - a word fire cannot read stays text
        return False
    return isinstance(parsed, (int, float)) and not isinstance(parsed, bool)


def traceback_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``MONAI_EXT_TRACEBACK`` asks for the full traceback of every error, on both command lines.

    Read with the yes/no words of the bundles' settings (:data:`~monai_ext.apps.bundle_support.FLAG_WORDS`: 1/0,
    true/false, yes/no, any case); unset or empty is no. Any other word is yes, with a note on stderr: whoever set
    the variable wants to see where, and a misspelt value must neither hide that nor break the error report.

    Args:
        environ: the environment (default ``os.environ``).
    """
    from monai_ext.apps.bundle_support import FLAG_WORDS

    given = (os.environ if environ is None else environ).get("MONAI_EXT_TRACEBACK", "")
    word = given.strip().lower()
    if not word or word in FLAG_WORDS:
        return bool(word) and FLAG_WORDS[word]
    print(f"MONAI_EXT_TRACEBACK={given!r} is not one of {'/'.join(FLAG_WORDS)}: showing the traceback", file=sys.stderr)
    return True


def exit_now(code: int) -> None:
    """Run every exit handler once (MLflow ends its run, multiprocessing joins its children, finalizers clean up,
    logging flushes), then leave with ``code``: after an uncaught exception Python would exit with 1 and offers no
    other way to choose the code."""
    atexit._run_exitfuncs()  # private, but the only way to run them before os._exit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def running_monai_bundle(argv0: str) -> bool:
    """Whether this process is ``python -m monai.bundle`` (its ``argv[0]`` is ``.../monai/bundle/__main__.py``)."""
    return Path(argv0).parts[-3:] == ("monai", "bundle", "__main__.py")


class UserErrorLogFilter(logging.Filter):
    """Drops a log record that carries a user's mistake with its traceback, which the hook then reports in one line.

    An error raised inside an ignite run (``--resume true`` refused when the trainer starts) is first handed to the
    engine's ``EXCEPTION_RAISED`` handlers, and MONAI's ``StatsHandler`` logs it with ``logger.exception``: the whole
    traceback, before the one line. So is a stop signal's exit (:func:`~monai_ext.io.signals.is_stop_record`),
    which the trainer reports in one line. Records without an exception, faults, and every record under
    ``MONAI_EXT_TRACEBACK=1`` pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if traceback_wanted():
            return True
        # a stop signal (SIGTERM of a queue's time limit) ends the run as planned: the trainer says so in one line
        if is_stop_record(record):
            return False
        error = record.exc_info[1] if record.exc_info else None
        return error is None or user_error_in(error) is None


def install_log_filter() -> None:
    """Put :class:`UserErrorLogFilter` on the loggers an engine's error reaches, and on their handlers, once each.

    MONAI's ``StatsHandler`` logs to its own logger (its ``name`` default, ``monai.handlers.StatsHandler``, which
    MONAI's ``get_logger`` gives a stdout handler and no propagation) or, given no name, to the engine's logger,
    whose records reach the root logger's handlers. That logger is made here as ``StatsHandler`` would make it, so
    its handler exists to be filtered; ``StatsHandler`` then finds it and adds no second one. The bundle's
    ``logging.conf`` has set up the root handlers before the config imports this module.
    """
    import inspect

    from monai.apps import get_logger
    from monai.handlers import StatsHandler

    stats_name = inspect.signature(StatsHandler).parameters["name"].default
    loggers = [logging.getLogger()] + ([get_logger(stats_name)] if stats_name else [])
    for logger in loggers:
        for target in (logger, *logger.handlers):
            if not any(isinstance(f, UserErrorLogFilter) for f in target.filters):
                target.addFilter(UserErrorLogFilter())


#: Settings of ``monai.bundle run`` itself (its own arguments and its workflow's), not config ids.
_RUN_ARGUMENTS = frozenset({"run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking",
                            "args_file", "workflow_name", "workflow_type", "properties_path"})


def unknown_settings(argv: Sequence[str]) -> list[str]:
    """The ``--name`` settings of a ``monai.bundle run`` command line that its configs do not define, each with the
    closest defined name where one is close (``--ckpt_pth (did you mean --ckpt_path?)``).

    MONAI adds any ``--name value`` to the config as a new item, so a misspelt ``--ckpt_pth`` is accepted in silence
    and the run goes on with the default (random weights, outputs inside the bundle). Known are the ids of the
    config files (``a#b`` or ``a::b`` for nested ones; a new id under a component counts, being a new argument
    of it: :func:`defined_id`), ``_meta_`` ids, ``run``'s own arguments, and with ``--tracking`` the tracking settings' items.
    Settings read from ``--args_file`` count as given there. Where the configs or the tracking settings cannot be
    read here (a dict typed as ``--tracking``), nothing is refused: MONAI says what is wrong with them.
    """
    from monai.bundle import ConfigParser

    given = dict(_settings_given(argv))
    if given.get("args_file"):
        given = {**ConfigParser.load_config_file(given["args_file"]), **given}
    paths = _config_paths(str(given.get("config_file", "")))
    tracking = given.get("tracking")
    if not paths or not all(Path(path).is_file() for path in paths) or (
            tracking and tracking != "mlflow" and not Path(str(tracking)).is_file()):
        return []
    config = ConfigParser.load_config_files(paths)
    if tracking:
        from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

        settings = DEFAULT_MLFLOW_SETTINGS if tracking == "mlflow" else ConfigParser.load_config_file(tracking)
        config = {**config, **(settings.get("configs") or {})}
    unknown = [name for name, _ in _settings_given(argv) if name not in _RUN_ARGUMENTS
               and not name.startswith("_meta_") and not defined_id(config, name.split("#"))]
    known = sorted({*config, *_RUN_ARGUMENTS})
    return [f"--{name}" + _closest_known(name, known, config) for name in unknown]


#: Settings of other tools (MONAI's own trainers, other bundles) that the bundles have under another name: the hint
#: names that one, not the closest spelling (``--amp`` was pointed at ``--validate#evaluator#amp``, which follows
#: ``precision`` and does nothing for training).
OTHER_NAMES = {"amp": "--precision bf16"}


def _closest_known(name: str, known: Sequence[str], config: object) -> str:
    """A hint for an unknown setting: the bundles' name for another tool's setting (:data:`OTHER_NAMES`), the closest
    top-level id, else the nested ids it names the last part of (``--base_lr``: ``--recipes#ultrasound#base_lr``,
    where a bundle keeps the setting per recipe); else nothing."""
    if name in OTHER_NAMES:
        return f" (did you mean {OTHER_NAMES[name]}?)"
    parent, _, leaf = name.rpartition("#")
    siblings = _value_at(config, parent.split("#")) if parent else None
    if isinstance(siblings, Mapping):  # --probe#c: the nearest key beside it (probe#cs), not the top-level probe
        close = difflib.get_close_matches(leaf, [k for k in siblings if isinstance(k, str)], 1)
        if close:
            return f" (did you mean --{parent}#{close[0]}?)"
    close = difflib.get_close_matches(name, known, 1)
    if close:
        return f" (did you mean --{close[0]}?)"
    nested = sorted(_ids_ending_with(config, name))[:NESTED_HINTS]
    return f" (did you mean {' or '.join('--' + n for n in nested)}?)" if nested and "#" not in name else ""


def _value_at(config: object, path: Sequence[str]) -> object:
    """The item at the id ``path`` of ``config``, None where there is none."""
    for key in path:
        if isinstance(config, Mapping) and key in config:
            config = config[key]
        elif isinstance(config, list) and key.isdigit() and int(key) < len(config):
            config = config[int(key)]
        else:
            return None
    return config


#: The most nested ids one hint names (a setting kept in every one of several recipes).
NESTED_HINTS = 3


def _ids_ending_with(config: object, name: str, prefix: str = "") -> Iterator[str]:
    """The ``a#b#name`` ids of ``config``'s nested mappings whose last part is ``name`` (below the top level)."""
    if not isinstance(config, Mapping):
        return
    for key, value in config.items():
        if not isinstance(key, str):
            continue
        if prefix and key == name:
            yield f"{prefix}{key}"
        yield from _ids_ending_with(value, name, f"{prefix}{key}#")


def defined_id(config: object, path: Sequence[str]) -> bool:
    """Whether the id ``path`` (``["probe", "cs"]`` for ``probe#cs``) is in ``config``, or names a new keyword
    argument of a component that is (``optimizer#betas``: a mapping with ``_target_``, which MONAI instantiates
    with every key and whose class refuses one it does not take). A new key under a plain mapping (``probe#c``
    beside ``probe#cs``) is read by nobody: MONAI would add it and the run go on with the default."""
    for depth, key in enumerate(path):
        if isinstance(config, Mapping) and key in config:
            config = config[key]
        elif isinstance(config, list) and key.isdigit() and int(key) < len(config):
            config = config[int(key)]
        else:
            return depth == len(path) - 1 and depth > 0 and isinstance(config, Mapping) and "_target_" in config
    return True


def _config_paths(value: str) -> list[str]:
    """The files of ``--config_file``: one path or MONAI's list syntax (``"['a.yaml','b.yaml']"``)."""
    return re.findall(r"[^'\"\[\],\s]+\.(?:ya?ml|json)", value)


def _settings_given(argv: Sequence[str]) -> list[tuple[str, str]]:
    """(name, value) of each ``--name value`` / ``--name=value`` after the verb, named as fire and MONAI take them
    (``-`` read as ``_``; ``::`` as ``#``); fire's own flags after a bare ``--`` are not settings."""
    pairs = []
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg.startswith("--"):
            name, equals, value = arg[2:].partition("=")
            if not equals:
                value = argv[index + 1] if index + 1 < len(argv) and not argv[index + 1].startswith("--") else ""
            pairs.append((name.replace("-", "_").replace("::", "#"), value))
    return pairs


class UnknownSettings(ValueError):
    """Settings on a ``monai.bundle run`` command line that the bundle does not define."""


class HelpAsked(UnknownSettings):
    """``--help`` on a ``monai.bundle run`` command line: answered with where the settings are described, exit 0."""


def check_settings(argv: Sequence[str]) -> None:
    """Refuse misspelt settings of a ``monai.bundle run`` command line (:func:`unknown_settings`), settings given
    twice, and ``--help`` (which MONAI would take for a setting).

    Raises:
        UnknownSettings: a ValueError naming each unknown setting, with the closest known one; a setting given twice;
            or saying where a bundle's settings are described.
    """
    if len(argv) < 2 or argv[1] != "run":
        return
    names = [name for name, _ in _settings_given(argv)]
    if "help" in names or "h" in names or "-h" in argv:
        raise HelpAsked("a bundle's settings and one command per use are in its docs/README.md (and the "
                        "comments of its configs/*.yaml); `python -m monai.bundle run -- --help` shows MONAI's own "
                        "options")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # MONAI keeps the last value without a word
        raise UnknownSettings(f"setting{'s' if len(repeated) > 1 else ''} {', '.join('--' + n for n in repeated)} "
                              "given twice; give each once")
    unknown = unknown_settings(argv)
    if unknown:
        raise UnknownSettings(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: not "
                              "defined by the bundle's configs (MONAI would add it and ignore it); check the "
                              "spelling in the bundle's docs/README.md")


def install() -> None:
    """Install the hook and the log filter once, in a ``python -m monai.bundle`` process only, and refuse misspelt
    settings of its command line."""
    if running_monai_bundle(sys.argv[0] if sys.argv else "") and sys.excepthook is not report_user_error:
        sys.excepthook = report_user_error
        install_log_filter()
        try:
            check_settings(sys.argv)
        except HelpAsked as e:  # an answer, not an error
            print(e)
            exit_now(0)
        except UnknownSettings as e:  # reported here: MONAI's config imports turn an error on import into a stub
            report_user_error(type(e), e, e.__traceback__)  # one line and exit code 2, or the traceback, then:
            exit_now(1)
        except Exception:  # noqa: BLE001 - a command line this check cannot read is MONAI's to judge
            logging.getLogger(__name__).debug("settings not checked", exc_info=True)


install()
