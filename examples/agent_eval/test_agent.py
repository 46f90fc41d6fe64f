"""A simulated LLM-agent evaluation: deterministic, fast, and shaped like the real thing.

Each run has two steps. The agent "solves" its subtest with the tier's set-up (the
expensive step: its transcript is kept in the step's directory); then every judge in the
experiment config votes (the cheap step), and the run passes when a majority approve.
About one run in twelve hits a simulated rate limit in its judge step on the first try: it
raises ``RateLimited``, the experiment pauses for a moment, and the run goes on in the same
session with its agent step reused, not paid for again.
"""

from __future__ import annotations

import hashlib
import time

from pytest_expresume import RateLimited, RunContext


def _score(*parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


def test_agent(experiment_run: RunContext) -> None:
    run = experiment_run
    thinking = run.config["thinking_mode"]

    def solve() -> int:
        time.sleep(0.01)  # the agent "works"
        tier_skill = 45 + 7 * int(run.tier[1:])
        quality = tier_skill + _score("agent", run.tier, run.subtest, run.run, thinking) // 3
        with open(run.step_dir("agent") / "transcript.txt", "a") as transcript:
            transcript.write(
                f"agent {run.tier} on subtest {run.subtest}, run {run.run}: quality {quality}\n"
            )
        return quality

    answer_quality = run.step("agent", solve)

    def judge() -> dict[str, bool]:
        limited_once = run.dir / "rate-limited-once"  # the provider says 429 once
        if _score("rate-limit", run.tier, run.subtest, run.run) < 8 and not limited_once.exists():
            limited_once.touch()
            raise RateLimited(retry_after=1, source="judge-provider")
        return {
            judge: answer_quality + _score("judge", judge, run.tier, run.subtest, run.run) // 4 > 75
            for judge in run.config["judges"]
        }

    votes = run.step("judge", judge)
    run.result.update(
        {
            "answer_quality": answer_quality,
            "judge_votes": votes,
            "judge_passed": sum(votes.values()) * 2 > len(votes),
            # What the calls would have cost: summed by --experiment-status and the report.
            "cost_usd": round(0.05 + answer_quality / 2000 + 0.002 * len(votes), 4),
        }
    )
    assert run.result["judge_passed"], f"judges rejected the answer: {votes}"
