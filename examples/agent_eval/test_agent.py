"""A simulated LLM-agent evaluation: deterministic, fast, and shaped like the real thing.

Each run "solves" its subtest with the tier's agent set-up, then every judge in the
experiment config votes; the run passes when a majority of judges approve. About one run
in twelve hits a simulated rate limit on its first attempt: that is an ``error`` (the run
did not finish), so a resume runs it again, and the second attempt goes through.
"""

from __future__ import annotations

import hashlib
import time

from pytest_expresume import RunContext


class RateLimitError(RuntimeError):
    """The model provider said: too many requests."""


def _score(*parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


def _earlier_attempts(run: RunContext) -> int:
    return len(list((run.dir.parent / ".attempts").glob(f"{run.dir.name}-*")))


def test_agent(experiment_run: RunContext) -> None:
    run = experiment_run
    thinking = run.config["thinking_mode"]
    if _score("rate-limit", run.tier, run.subtest, run.run) < 8 and not _earlier_attempts(run):
        raise RateLimitError(f"429 from provider during {run.tier}/{run.subtest} run {run.run}")

    time.sleep(0.01)  # the agent "works"
    tier_skill = 45 + 7 * int(run.tier[1:])
    answer_quality = tier_skill + _score("agent", run.tier, run.subtest, run.run, thinking) // 3
    (run.dir / "transcript.txt").write_text(
        f"agent {run.tier} on subtest {run.subtest}, run {run.run}: quality {answer_quality}\n"
    )

    votes = {
        judge: answer_quality + _score("judge", judge, run.tier, run.subtest, run.run) // 4 > 75
        for judge in run.config["judges"]
    }
    run.result.update(
        {
            "answer_quality": answer_quality,
            "judge_votes": votes,
            "judge_passed": sum(votes.values()) * 2 > len(votes),
        }
    )
    assert run.result["judge_passed"], f"judges rejected the answer: {votes}"
