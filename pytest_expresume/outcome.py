"""A run's status from the reports of its phases (setup, call, teardown)."""

from __future__ import annotations

from dataclasses import dataclass, field

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


#: What pytest-timeout's signal method fails a test with: ``Timeout (>1.0s) from pytest-timeout.``
_TIMEOUT_PREFIX = "Timeout (>"
_TIMEOUT_SUFFIX = "from pytest-timeout."


def is_timeout_message(text: str) -> bool:
    """Whether an exception's text is pytest-timeout's (an infrastructure error, no verdict)."""
    message = text.partition(": ")[2] if text.startswith("Failed: ") else text
    return message.startswith(_TIMEOUT_PREFIX) and message.rstrip().endswith(_TIMEOUT_SUFFIX)


@dataclass
class RunAttempt:
    """One attempt at a run, phase by phase; a phase seen again (a retry plugin runs the
    call again in place) replaces what was seen of it before."""

    statuses: dict[str, RunStatus] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)

    def note(self, when: str, status: RunStatus | None, message: str, duration: float) -> None:
        """What phase ``when`` decided (None: nothing), its exception's text, its duration."""
        self.durations[when] = duration
        if status is None:
            self.statuses.pop(when, None)
            self.messages.pop(when, None)
            return
        self.statuses[when] = status
        if status in ("failed", "error"):
            self.messages[when] = short_message(message)
        else:
            self.messages.pop(when, None)

    def status(self) -> RunStatus:
        """The run's status: a teardown error wins, else the first verdict."""
        return final_status([self.statuses[w] for w in _PHASES if w in self.statuses])

    def message(self) -> str | None:
        """The text of the first phase that failed, if any."""
        return next((self.messages[w] for w in _PHASES if w in self.messages), None)

    def duration(self) -> float:
        """Setup, call and teardown, as last run."""
        return sum(self.durations.values())


_PHASES = ("setup", "call", "teardown")
