"""The plugins of each role, as users meet them: xdist deselection seen by other plugins,
fixtures misused, and the session fixture on workers."""

from __future__ import annotations

import pytest
from expresume_testing import XDIST, only_experiment_dir, statuses, write_experiment

#: A conftest like pytest-sugar's and many suites': it expects real items.
ITEM_READING_CONFTEST = """
seen = []

def pytest_deselected(items):
    for item in items:
        seen.append((item.config.rootpath, item.nodeid))

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"conftest saw {len(seen)} deselected items")
"""


@pytest.mark.xdist
def test_xdist_resume_hands_other_plugins_no_stand_in_items(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, behaviour={"T0-01-2": "error"})
    pytester.makeconftest(ITEM_READING_CONFTEST)
    first = pytester.runpytest("-n", "2", "-p", "no:cacheprovider")
    first.assert_outcomes(passed=7, failed=1)

    second = pytester.runpytest("-n", "2", "-p", "no:cacheprovider")
    second.assert_outcomes(passed=0, failed=1, deselected=7)
    assert "INTERNALERROR" not in second.stdout.str()
    # The controller collected nothing, so its conftest heard of no item it would lack.
    second.stdout.fnmatch_lines(["conftest saw 0 deselected items"])
    assert statuses(only_experiment_dir(pytester))["T0/01/2"] == "error"


def test_in_process_deselection_reaches_other_plugins_as_real_items(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester)
    pytester.makeconftest(ITEM_READING_CONFTEST)
    pytester.runpytest("-k", "T0").assert_outcomes(passed=4, deselected=4)
    again = pytester.runpytest()
    again.assert_outcomes(passed=4, deselected=4)
    again.stdout.fnmatch_lines(["conftest saw 4 deselected items"])


@pytest.mark.parametrize("fixture", ["experiment", "experiment_run"])
def test_a_fixture_without_an_experiment_is_refused_at_collection(
    pytester: pytest.Pytester, fixture: str
) -> None:
    pytester.makepyfile(test_agent=f"def test_agent({fixture}):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: expresume: test_agent.py::test_agent requests {fixture} but no experiment*"]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "results").exists()


def test_fixtures_looked_up_at_run_time_fail_the_test_with_a_message(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_lookup="""
        def test_experiment(request):
            request.getfixturevalue("experiment")

        def test_run(request):
            request.getfixturevalue("experiment_run")
        """
    )
    without = pytester.runpytest("-p", "no:cacheprovider")
    without.assert_outcomes(failed=2)
    without.stdout.fnmatch_lines(
        ["*expresume: the fixture 'experiment' needs an experiment config*"]
    )

    write_experiment(pytester)
    within = pytester.runpytest("-p", "no:cacheprovider", "test_lookup.py")
    within.assert_outcomes(passed=1, failed=1)
    within.stdout.fnmatch_lines(["*'experiment_run' can only be requested by the test function*"])
    assert "UsageError" not in within.stdout.str()


SESSION_FIXTURE_TEST = """
import json, pathlib

def test_agent(experiment_run, experiment):
    out = pathlib.Path(experiment.dir).parent.parent / "seen"
    out.mkdir(exist_ok=True)
    (out / experiment_run.key.test_id).write_text(json.dumps(dict(experiment.counts)))
    assert experiment.config["judges"] == ("opus", "sonnet", "haiku")
"""


@pytest.mark.parametrize("xdist", [pytest.param([], id="in-process"), XDIST])
def test_the_experiment_fixture_gives_the_same_counts_in_every_process(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    write_experiment(pytester)
    pytester.makepyfile(test_agent=SESSION_FIXTURE_TEST)
    # (Under xdist, -k's deselections are the workers' and xdist does not count them.)
    pytester.runpytest("-k", "T0").assert_outcomes(passed=4, deselected=4)
    pytester.runpytest(*xdist).assert_outcomes(passed=4, deselected=4)
    seen = pytester.path / "seen"
    latest = {p.name: p.read_text() for p in seen.iterdir() if p.name.startswith("T1")}
    assert len(latest) == 4
    expected = '{"runs":8,"done":4,"passed":4,"failed":0,"error":0,"skipped":0,"to_run":4}'
    assert {text.replace(" ", "") for text in latest.values()} == {expected}
