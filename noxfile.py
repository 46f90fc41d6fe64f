"""The test matrix: every Python we claim, against the oldest pytest and pytest-xdist we
claim and the newest, and once without pytest-xdist.

``nox`` runs the sessions whose interpreter this machine has; a missing one is skipped,
not a failure (CI runs the matrix where the interpreters exist). ``nox -s tests-3.12``
runs one; arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import nox

nox.options.error_on_missing_interpreters = False
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "no"

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
#: The oldest releases ``pyproject.toml`` claims to work with.
OLDEST = ["pytest==8.0.*", "pytest-xdist==3.5.*"]


@nox.session(python=PYTHONS)
@nox.parametrize("versions", ["oldest", "newest"])
def tests(session: nox.Session, versions: str) -> None:
    """The test suite against the oldest or the newest pytest and pytest-xdist."""
    session.install("-e", ".[test]", *(OLDEST if versions == "oldest" else []))
    session.run("python", "-m", "pytest", "--version")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python="3.11")
def tests_without_xdist(session: nox.Session) -> None:
    """The test suite where pytest-xdist is not installed (its tests are skipped)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pip", "uninstall", "--yes", "pytest-xdist")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)
