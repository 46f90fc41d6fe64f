"""``--experiment-report FILE.html``: one self-contained page (inline CSS and SVG, no
script, nothing fetched), built while the result files stream past."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Collection, Mapping
from pathlib import Path

from .atomic_write import write_atomic
from .grid import RunKey
from .results import RunBrief, TierFigures, tier_figures, wilson_interval
from .scanner import ResultStatus
from .statuses import RUN_STATUSES, TierCounts, tally
from .store import Checkpoint

#: Errors listed in full; past this the page says how many more there are.
MAX_ERRORS_LISTED = 200

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d232a; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.meta { color: #55606b; margin-bottom: 16px; }
table { border-collapse: collapse; }
td, th { padding: 4px 10px; text-align: right; white-space: nowrap; }
th { border-bottom: 1px solid #c5ccd3; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #f4f6f8; }
.errors td { text-align: left; vertical-align: top; font-family: ui-monospace, monospace;
  font-size: 12px; white-space: pre-wrap; }
.legend { color: #55606b; font-size: 12px; }
"""


def _colour(rate: float | None) -> str:
    """Red (0%) through amber to green (100%); grey for no verdict."""
    if rate is None:
        return "#d5d9de"
    hue = round(120 * rate)
    return f"hsl({hue}, 62%, 52%)"


def write_report(
    experiment_dir: Path,
    target: Path,
    *,
    checkpoint: Checkpoint,
    grid: Collection[RunKey] | None,
    cost_key: str = "cost_usd",
    result_status: ResultStatus | None = None,
) -> None:
    """Write the report of ``experiment_dir`` to ``target`` (whole or not at all)."""
    cells: dict[tuple[str, str], Counter[str]] = {}
    errors: list[tuple[RunKey, str]] = []
    error_count = 0

    def see(run: RunBrief) -> None:
        nonlocal error_count
        cells.setdefault((run.key.tier, run.key.subtest), Counter())[run.status] += 1
        if run.status == "error":
            error_count += 1
            if len(errors) < MAX_ERRORS_LISTED:
                errors.append((run.key, (run.message or "").strip()))

    figures = tier_figures(
        experiment_dir, cost_key, result_status=result_status, grid=grid, each=see
    )
    total = figures.pop("total")
    counted = tally(checkpoint.completed_runs, grid)
    tiers = list(dict.fromkeys([*counted.tiers, *figures]))
    if grid is not None:
        subtests = {
            tier: list(dict.fromkeys(key.subtest for key in grid if key.tier == tier))
            for tier in tiers
        }
    else:
        subtests = {
            tier: sorted({subtest for (t, subtest) in cells if t == tier}) for tier in tiers
        }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>expresume: {html.escape(checkpoint.experiment_id)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(checkpoint.experiment_id)}</h1>",
        f'<div class="meta">{html.escape(str(experiment_dir))} &middot; state '
        f"{html.escape(checkpoint.status)} &middot; last update "
        f"{html.escape(checkpoint.last_updated_at)}</div>",
        "<h2>Pass rate by tier and subtest</h2>",
        _heat_map(tiers, subtests, cells),
        '<div class="legend">Each cell: passed / (passed + failed) of the current results; '
        "grey: no verdict yet.</div>",
        "<h2>Per tier</h2>",
        _tier_table(tiers, counted.tiers, counted.total, figures, total),
        f"<h2>Errors ({error_count})</h2>",
        _error_table(errors, error_count),
        "</body></html>",
    ]
    write_atomic(target, "\n".join(parts).encode(), fsync=False)


def _heat_map(
    tiers: list[str],
    subtests: dict[str, list[str]],
    cells: dict[tuple[str, str], Counter[str]],
) -> str:
    columns = max((len(names) for names in subtests.values()), default=0)
    size, label, top = 44, 64, 8
    width = label + max(columns, 1) * size + 8
    height = top + max(len(tiers), 1) * size + 8
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="pass rate heat map">'
    ]
    for row, tier in enumerate(tiers):
        y = top + row * size
        out.append(
            f'<text x="{label - 8}" y="{y + size / 2 + 5}" text-anchor="end" '
            f'font-size="13">{html.escape(tier)}</text>'
        )
        for column, subtest in enumerate(subtests.get(tier, [])):
            counts = cells.get((tier, subtest), Counter())
            verdicts = counts["passed"] + counts["failed"]
            rate = counts["passed"] / verdicts if verdicts else None
            x = label + column * size
            listed = ", ".join(f"{counts[s]} {s}" for s in RUN_STATUSES if counts[s])
            title = f"{tier}/{subtest}: {listed or 'no result yet'}"
            out.append(
                f'<g><title>{html.escape(title)}</title><rect x="{x}" y="{y}" '
                f'width="{size - 3}" height="{size - 3}" rx="3" fill="{_colour(rate)}"/>'
                f'<text x="{x + (size - 3) / 2}" y="{y + 17}" text-anchor="middle" '
                f'font-size="11">{html.escape(subtest)}</text>'
                f'<text x="{x + (size - 3) / 2}" y="{y + 33}" text-anchor="middle" '
                f'font-size="11">{counts["passed"]}/{verdicts}</text></g>'
            )
    out.append("</svg>")
    return "".join(out)


def _tier_table(
    tiers: list[str],
    counts: Mapping[str, TierCounts],
    total_counts: TierCounts,
    figures: Mapping[str, TierFigures],
    total: TierFigures,
) -> str:
    head = (
        "<tr><th>tier</th><th>runs</th>"
        + "".join(f"<th>{s}</th>" for s in RUN_STATUSES)
        + "<th>pending</th><th>pass rate</th><th>95% interval</th><th></th>"
        "<th>cost</th><th>duration (s)</th></tr>"
    )
    rows = [head]
    for name, tier_counts, tier in [
        *((t, counts.get(t, TierCounts(runs=None)), figures.get(t, TierFigures())) for t in tiers),
        ("total", total_counts, total),
    ]:
        runs, by_status, pending = tier_counts.runs, tier_counts.counts, tier_counts.pending
        if tier.verdicts:
            low, high = wilson_interval(tier.passed, tier.verdicts)
            rate = tier.passed / tier.verdicts
            rate_cell = f"{rate:.1%}"
            interval = f"{low:.1%} &ndash; {high:.1%}"
            bar = _interval_bar(rate, low, high)
        else:
            rate_cell, interval, bar = "-", "-", ""
        cells = [
            html.escape(name),
            "?" if runs is None else str(runs),
            *(str(by_status.get(s, 0)) for s in RUN_STATUSES),
            "?" if pending is None else str(pending),
            rate_cell,
            interval,
            bar,
            f"{tier.cost:.2f}" if tier.costed else "-",
            f"{tier.duration_seconds:.1f}",
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _interval_bar(rate: float, low: float, high: float) -> str:
    width = 120
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="14">'
        f'<rect x="0" y="5" width="{width}" height="4" fill="#e3e7eb"/>'
        f'<rect x="{low * width:.1f}" y="3" width="{max((high - low) * width, 1):.1f}" '
        f'height="8" fill="#8fb3d9"/>'
        f'<rect x="{rate * width - 1:.1f}" y="1" width="2" height="12" fill="#1d4f91"/></svg>'
    )


def _error_table(errors: list[tuple[RunKey, str]], count: int) -> str:
    if not errors:
        return "<p>None.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(key.test_id)}</td><td>{html.escape(message) or '-'}</td></tr>"
        for key, message in errors
    )
    more = (
        f"<p>... and {count - len(errors)} more (see --experiment-export).</p>"
        if count > len(errors)
        else ""
    )
    return f'<table class="errors"><tr><th>run</th><th>message</th></tr>{rows}</table>{more}'
