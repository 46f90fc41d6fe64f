"""Path-valued options written as two tokens (``--results-root DIR``): pytest reads the
command line for test paths before any plugin's options are known, takes an existing DIR
for a path to test, and chooses the rootdir and the ini file from it. When that changed
which ini file the session runs with, the session is refused with how to write the option.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from .config import ConfigError

#: Options whose value is a path; pytest reads the command line once before it knows them.
PATH_OPTIONS = (
    "--experiment",
    "--experiment-dir",
    "--results-root",
    "--experiment-export",
    "--experiment-report",
)
_SETUP_OPTIONS = ("-c", "--config-file", "--inifile", "--rootdir")
#: pytest 8.1 and later take the first ``pyproject.toml`` when no file configures pytest.
_PYPROJECT_FALLBACK = pytest.version_tuple >= (8, 1)
#: What pytest looks for in each dir, walking up from where its search starts.
_INI_NAMES = (
    "pytest.toml",  # pytest 9
    ".pytest.toml",
    "pytest.ini",
    ".pytest.ini",
    "pyproject.toml",
    "tox.ini",
    "setup.cfg",
)


def check_path_options(config: pytest.Config) -> None:
    """Refuse a path option written as two tokens when pytest took its value for a test
    path and so ran with another ini file (or, with none anywhere, another rootdir) than
    the command line without that value would have given."""
    args = [str(arg) for arg in config.invocation_params.args]
    if any(arg.split("=", 1)[0] in _SETUP_OPTIONS for arg in args):
        return  # the user chose the ini file or the rootdir: the paths did not
    here = config.invocation_params.dir
    taken = {
        index + 1
        for index, (option, value) in enumerate(itertools.pairwise(args))
        if option in PATH_OPTIONS and _as_test_path(here, value) is not None
    }
    if not taken:
        return
    others = [args[i] for i in range(len(args)) if i not in taken]
    expected = _locate_ini(_search_start(here, others))
    for index in sorted(taken):
        option, value = args[index - 1], args[index]
        actual = config.inipath.resolve() if config.inipath is not None else None
        if expected is not None or actual is not None:
            if expected == actual:
                continue
        elif Path(here, value).resolve().is_relative_to(here.resolve()):
            continue  # no ini file anywhere: inside the current dir nothing moved
        ini = str(config.inipath) if config.inipath is not None else "none found"
        raise ConfigError(
            f"pytest read '{option} {value}' before it knew that {option} takes a value, "
            f"so it took {value} for a path to test when it chose the rootdir "
            f"({config.rootpath}) and the ini file ({ini}): write {option}={value}"
        )


def _as_test_path(here: Path, arg: str) -> Path | None:
    """The dir pytest's rootdir search takes from a command-line argument, if any."""
    if arg.startswith("-"):
        return None
    path = Path(here, arg.split("::", 1)[0])
    if not path.exists():
        return None  # pytest ignores paths that do not exist when it chooses
    return path if path.is_dir() else path.parent


def _search_start(here: Path, args: list[str]) -> Path:
    """Where pytest's ini search starts for these arguments: their common dir, or here."""
    dirs = [str(d.resolve()) for arg in args if (d := _as_test_path(here, arg)) is not None]
    return Path(os.path.commonpath(dirs)) if dirs else here.resolve()


def _locate_ini(start: Path) -> Path | None:
    """The ini file pytest finds walking up from ``start``: the first that configures
    pytest, else (pytest 8.1 and later) the first ``pyproject.toml`` on the way."""
    first_pyproject: Path | None = None
    for base in (start, *start.parents):
        for name in _INI_NAMES:
            path = base / name
            if not path.is_file():
                continue
            if name == "pyproject.toml" and first_pyproject is None and _PYPROJECT_FALLBACK:
                first_pyproject = path
            if _configures_pytest(path):
                return path
    return first_pyproject


def _configures_pytest(path: Path) -> bool:
    if path.name.startswith(("pytest.", ".pytest.")):
        return True  # even empty: pytest takes it
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    section = {
        "pyproject.toml": "[tool.pytest",  # .ini_options, or pytest 9's own table
        "tox.ini": "[pytest]",
        "setup.cfg": "[tool:pytest]",
    }[path.name]
    return section in text
