"""Which errors are a user's mistake (one line, exit code 2) and which are faults to debug (a traceback)."""

from __future__ import annotations

import errno
import importlib.machinery

import pytest

from monai_ext.io.errors import user_error_in


def raised_in(module: str, filename: str, error: BaseException, spec_name: str | None = None) -> BaseException:
    """``error`` as raised by code of ``module`` stored at ``filename`` (any path: a symbolic link, a wheel);
    ``spec_name``: the import name of a module run as ``__main__``."""
    code = compile("raise error", filename, "exec")
    spec = importlib.machinery.ModuleSpec(spec_name, None) if spec_name else None
    with pytest.raises(type(error)) as raised:
        exec(code, {"__name__": module, "__spec__": spec, "error": error})
    return raised.value


@pytest.mark.parametrize("module, filename, user_error", [
    ("monai_ext.data.datalists", "/work/main/monai_ext/data/datalists.py", True),
    # the package imported through a link (/home -> /gpfs): the frame's path is the linked one
    ("monai_ext.data.datalists", "/home/me/link-to-checkout/monai_ext/data/datalists.py", True),
    ("monai.bundle.config_item", "/venv/lib/python3.11/site-packages/monai/bundle/config_item.py", True),
    ("torch.nn.functional", "/venv/lib/python3.11/site-packages/torch/nn/functional.py", False),
    # a library at a path that happens to contain the package's name is still a library
    ("sklearn.model_selection._split", "/home/monai_ext/venv/sklearn/model_selection/_split.py", False),
])
def test_a_value_error_is_the_users_when_this_package_or_monai_bundle_raised_it(module, filename, user_error) -> None:
    error = raised_in(module, filename, ValueError("batch_size must be positive, got 0"))
    assert (user_error_in(error) is error) == user_error


@pytest.mark.parametrize("spec_name, user_error", [("monai_ext.cli", True), ("torch.utils.collect_env", False),
                                                   (None, False)])
def test_a_module_run_as_main_is_told_by_its_import_name(spec_name, user_error) -> None:
    """``python -m monai_ext.cli``: the module's ``__name__`` is ``__main__``, its spec keeps ``monai_ext.cli``."""
    error = raised_in("__main__", "/anywhere/cli.py", ValueError("unknown option --bogus"), spec_name)
    assert (user_error_in(error) is error) == user_error


@pytest.mark.parametrize("error, user_error", [
    (OSError(errno.ENAMETOOLONG, "File name too long", "x" * 300), True),   # not one of USER_ERRORS, still the path's
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "out/models"), True),
    (OSError(errno.EIO, "Input/output error"), False),                        # names no file: the disk, not the path
    (OSError(errno.EMFILE, "Too many open files", "/data/x.png"), False),     # a descriptor leak: a fault to debug
    (OSError(errno.EXDEV, "Invalid cross-device link", "/tmp/a"), False),
    (PermissionError(errno.EACCES, "Permission denied", "/data/out"), True),
    (OSError(errno.ENOSPC, "No space left on device", "/data/out/x.pt"), True),
    (FileNotFoundError("config missing"), False),                             # no errno: a library's own message
])
def test_the_operating_systems_refusal_of_a_path_is_the_users_wherever_raised(error, user_error) -> None:
    raised = raised_in("pathlib", "/usr/lib/python3.11/pathlib.py", error)
    wrapped = RuntimeError("Failed to evaluate ConfigExpression")
    wrapped.__cause__ = raised
    assert (user_error_in(wrapped) is raised) == user_error


def _warn_both_ways(message: str) -> None:
    """What pydicom's ``warn_and_log`` does: the same note to ``warnings`` and to the "pydicom" logger."""
    import logging
    import warnings

    warnings.warn(message, UserWarning, stacklevel=1)
    logging.getLogger("pydicom").warning(message)


@pytest.mark.parametrize("emit, expected", [
    (lambda: _warn_both_ways("Invalid value for VR IS: '1A'"), ["Invalid value for VR IS: '1A'"]),
    (lambda: __import__("logging").getLogger("pydicom.filereader").warning("Expected explicit VR,\n  found implicit"),
     ["Expected explicit VR, found implicit"]),
    (lambda: [_warn_both_ways("a"), _warn_both_ways("b"), _warn_both_ways("a")], ["a", "b"]),
    (lambda: None, []),
])
def test_reader_warnings_are_collected_not_printed(emit, expected, capfd) -> None:
    import logging

    from monai_ext.io.errors import collected_reader_warnings

    logger = logging.getLogger("pydicom")
    before = (logger.propagate, list(logger.handlers))
    with collected_reader_warnings() as notes:
        emit()
    assert notes == expected
    assert capfd.readouterr().err == ""  # nothing reached the terminal
    assert (logger.propagate, list(logger.handlers)) == before  # the logger is as it was


def test_warnings_that_are_no_note_about_the_file_go_on_to_the_filters() -> None:
    """A library's DeprecationWarning on its first import is not a note about the file being read."""
    import warnings

    from monai_ext.io.errors import collected_reader_warnings

    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        with collected_reader_warnings() as notes:
            warnings.warn("old API", DeprecationWarning, stacklevel=1)
            warnings.warn("Invalid value for VR IS", UserWarning, stacklevel=1)
    assert notes == ["Invalid value for VR IS"]
    assert [(str(w.message), w.category) for w in outside] == [("old API", DeprecationWarning)]
