"""The lines a session's header shows about its experiment: what starts or resumes, and
what the opening found (reconciled runs, runs in flight, a grown grid, a dead session)."""

from __future__ import annotations

from .opening import OpenedExperiment
from .statuses import LIVE_STATES


def header_lines(opened: OpenedExperiment, where: str) -> list[str]:
    """The header's lines for ``opened``, its experiment dir written as ``where``."""
    plan, counts = opened.plan, opened.counts
    name = plan.spec.experiment_id
    if plan.mode == "new":
        lines = [f"expresume: starting {name} at {where}: {counts['runs']} runs to run"]
    elif counts["to_run"] == 0:
        lines = [
            f"expresume: resuming {name} at {where}: all {counts['runs']} runs done, nothing to run"
        ]
    else:
        lines = [
            f"expresume: resuming {name} at {where}: "
            f"{counts['done']} of {counts['runs']} runs done, {counts['to_run']} to run"
        ]
    if opened.reconciled:
        lines.append(
            f"expresume: reconciled {len(opened.reconciled)} runs whose result files "
            "the checkpoint did not list"
        )
    if opened.in_flight:
        earlier = opened.checkpoint
        if earlier is not None and earlier.status in LIVE_STATES:
            why = "were in flight when a session died"
        else:
            why = "were started and not finished (interrupted, or stopped by --until-step)"
        lines.append(
            f"expresume: {len(opened.in_flight)} runs {why} (a run dir, no result "
            "file): they run after the others"
        )
    if opened.grid_told:
        lines.append(f"expresume: grid: {opened.grid_told}")
    if opened.unwhole:
        named = ", ".join(key.test_id for key in sorted(opened.unwhole))
        lines.append(
            f"expresume: {len(opened.unwhole)} runs the checkpoint listed as done have "
            "no whole result file (a power cut after a session died?): they run again: "
            f"{named}"
        )
    lines += [f"expresume: runtime key {line} (given value used)" for line in plan.replaced]
    checkpoint = opened.checkpoint
    if checkpoint is not None and checkpoint.status in LIVE_STATES:
        lines.append(
            f"expresume: the checkpoint says '{checkpoint.status}': an earlier session was "
            "killed before it could close the experiment (its recorded runs are kept)"
        )
    return lines
