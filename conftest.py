"""pytest refuses ``pytest_plugins`` outside the rootdir's conftest: pytester is enabled here."""

from __future__ import annotations

pytest_plugins = ["pytester"]
