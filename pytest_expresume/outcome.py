"""A run's status from the reports of its phases (setup, call, teardown)."""

from __future__ import annotations

from .statuses import RunStatus

MESSAGE_LIMIT = 500


def phase_status(
    when: str,
    outcome: str,
    *,
    verdict_exception: bool,
    wasxfail: bool,
    strict_xpass: bool,
) -> RunStatus | None:
    """The status one phase decides, or None when it decides nothing.

    ``verdict_exception``: the call raised an AssertionError or ``pytest.fail()``.
    """
    if when == "setup":
        return {"failed": "error", "skipped": "skipped"}.get(outcome)  # type: ignore[return-value]
    if when == "call":
        if outcome == "passed":
            return "passed"
        if outcome == "skipped":
            return "failed" if wasxfail else "skipped"
        if strict_xpass:
            return "passed"
        return "failed" if verdict_exception else "error"
    if when == "teardown" and outcome == "failed":
        return "error"
    return None


def final_status(phases: list[RunStatus]) -> RunStatus:
    """Combine the phase statuses: a teardown error wins, else the first verdict."""
    if not phases:
        return "error"
    if len(phases) > 1 and phases[-1] == "error":
        return "error"
    return phases[0]


def short_message(text: str) -> str:
    """The first line of an exception's text, cut to a readable length."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= MESSAGE_LIMIT else first[: MESSAGE_LIMIT - 3] + "..."
