"""Which errors are a user's mistake (one line, exit code 2) and which are faults to debug (a traceback)."""

from __future__ import annotations

import errno

import pytest

from monai_ext.io.errors import user_error_in


def raised_in(module: str, filename: str, error: BaseException) -> BaseException:
    """``error`` as raised by code of ``module`` stored at ``filename`` (any path: a symbolic link, a wheel)."""
    code = compile("raise error", filename, "exec")
    with pytest.raises(type(error)) as raised:
        exec(code, {"__name__": module, "error": error})
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


@pytest.mark.parametrize("error, user_error", [
    (OSError(errno.ENAMETOOLONG, "File name too long", "x" * 300), True),   # not one of USER_ERRORS, still the path's
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "out/models"), True),
    (OSError(errno.EIO, "Input/output error"), False),                        # names no file: the disk, not the path
    (FileNotFoundError("config missing"), False),                             # no errno: a library's own message
])
def test_the_operating_systems_refusal_of_a_path_is_the_users_wherever_raised(error, user_error) -> None:
    raised = raised_in("pathlib", "/usr/lib/python3.11/pathlib.py", error)
    wrapped = RuntimeError("Failed to evaluate ConfigExpression")
    wrapped.__cause__ = raised
    assert (user_error_in(wrapped) is raised) == user_error
