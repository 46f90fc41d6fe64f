"""pytest-xdist: every worker gets the controller's snapshot of the experiment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plugin import ExperimentPlugin

#: Keys in ``workerinput`` (controller to workers) and ``workeroutput`` (back).
HANDOFF = "expresume"
DESELECTED = "expresume_deselected"


class XdistHandoff:
    """On the xdist controller: give every worker the same snapshot of the experiment."""

    def __init__(self, plugin: ExperimentPlugin) -> None:
        self.plugin = plugin
        self._snapshot: dict[str, Any] | None = None

        self._deselection_reported = False

    def pytest_configure_node(self, node: Any) -> None:
        if self._snapshot is None:
            self._snapshot = self.plugin.handoff()
        node.workerinput[HANDOFF] = self._snapshot

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        nodeids = getattr(node, "workeroutput", {}).get(DESELECTED)
        if nodeids and not self._deselection_reported:
            # Every worker deselected the same runs from the same snapshot: report them once.
            self._deselection_reported = True
            self.plugin.deselected_done = len(nodeids)
            self.plugin.config.hook.pytest_deselected(items=[DeselectedRun(n) for n in nodeids])


@dataclass(frozen=True)
class DeselectedRun:
    """Stands for a run a worker deselected (the controller has no items of its own)."""

    nodeid: str
