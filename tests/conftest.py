"""Fixtures shared by the test modules (helpers to import are in expresume_testing.py)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from expresume_testing import EXPERIMENT

# Imported here, before any in-process pytester session: such a session removes the modules
# it imported when it ends, and numpy imported again after that is a second copy of its
# Python side over the same C core (numpy warns "reloaded"; pandas then fails on numpy's
# _NoValue sentinel, as CI saw on Python 3.10). Imported once, they stay.
for _module in ("numpy", "pandas"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_module)


@pytest.fixture(autouse=True)
def _signal_handlers_left_alone() -> Iterator[None]:
    """Sessions run in this process install a SIGTERM handler: each must put it back."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    changed = [sig.name for sig, handler in before.items() if signal.getsignal(sig) != handler]
    for sig, handler in before.items():
        signal.signal(sig, handler)
    assert not changed, f"a session run in-process left its {changed} handler installed"


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    """An empty experiment dir, named as the plugin names them."""
    directory = tmp_path / EXPERIMENT
    directory.mkdir()
    return directory


#: Plugins that the sessions the tests start leave out unless a test asks for them:
#: Hypothesis (they never use it, and it costs about a second a process), pytest-sugar
#: (it rewrites the summary that assert_outcomes reads), pytest-randomly (it reorders runs
#: the tests count in order) and pytest-retry (it keeps settings in module globals and
#: breaks the second in-process session). tests/test_other_plugins.py turns them on.
SESSION_ADDOPTS = "-p no:hypothesispytest -p no:sugar -p no:randomly -p no:pytest-retry"


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, its sessions (in-process or not) without the plugins above."""
    # Set after pytester's own set-up, which clears PYTEST_ADDOPTS.
    monkeypatch.setenv("PYTEST_ADDOPTS", SESSION_ADDOPTS)
    return pytester


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if importlib.util.find_spec("xdist") is not None:
        return
    skip = pytest.mark.skip(reason="pytest-xdist is not installed")
    for item in items:
        if item.get_closest_marker("xdist") is not None:
            item.add_marker(skip)
