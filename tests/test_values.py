"""A paid-for result is never dropped for its form: every value is saved, converted where
JSON cannot hold it, each conversion named; the run's status is what the test said."""

from __future__ import annotations

import datetime
import decimal
import importlib.util
import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from expresume_testing import only_experiment_dir, statuses, write_experiment
from hypothesis import given
from hypothesis import strategies as st

from pytest_expresume.values import Conversion, encode_result

BODY = """
import dataclasses, datetime, decimal, enum, pathlib, uuid
{imports}

class Colour(enum.Enum):
    RED = "red"

class Unshowable:
    def __repr__(self):
        raise ValueError("no")

@dataclasses.dataclass
class Verdict:
    judge: str
    score: float

def test_agent(experiment_run):
    run = experiment_run
    run.result["details"] = {{"value": {expression}, "kept": "as is"}}
    {verdict}
"""

CASES: list[tuple[str, str, Any, str, str]] = [
    # (id, expression, saved value, "was", "saved_as")
    ("nan", "float('nan')", "NaN", "float nan", "NaN"),
    ("infinity", "float('inf')", "Infinity", "float inf", "Infinity"),
    ("minus-infinity", "-float('inf')", "-Infinity", "float -inf", "-Infinity"),
    ("set", "{3, 1, 2}", [1, 2, 3], "set", "list"),
    ("tuple", "('opus', 0.9)", ["opus", 0.9], "tuple", "list"),
    (
        "datetime",
        "datetime.datetime(2026, 1, 20, 6, 50, 26)",
        "2026-01-20T06:50:26",
        "datetime",
        "string (ISO 8601)",
    ),
    (
        "dataclass",
        "Verdict('opus', 0.75)",
        {"judge": "opus", "score": 0.75},
        "dataclass Verdict",
        "object",
    ),
    ("decimal", "decimal.Decimal('0.1')", "Decimal('0.1')", "Decimal", "string (repr)"),
    (
        "path",
        "pathlib.PurePosixPath('/w/out')",
        "PurePosixPath('/w/out')",
        "PurePosixPath",
        "string (repr)",
    ),
    ("big-int", "2 ** 70", str(2**70), "int beyond 64 bits", "string"),
    ("enum", "Colour.RED", "red", "enum Colour", "its value"),
    (
        "uuid",
        "uuid.UUID(int=1)",
        "00000000-0000-0000-0000-000000000001",
        "UUID",
        "string",
    ),
    (
        "broken-repr",
        "Unshowable()",
        "<Unshowable object; its repr raised ValueError>",
        "Unshowable",
        "string (repr)",
    ),
    ("int-key", "{1: 'one'}", {"1": "one"}, "int key 1", "string key"),
]


def _saved(experiment_dir: Any, run: str = "T0/00/run_01") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((experiment_dir / run / "run_result.json").read_text())
    return data


@pytest.mark.parametrize("verdict", ["pass", "fail"])
@pytest.mark.parametrize(
    ("expression", "saved", "was", "saved_as"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_a_value_json_cannot_hold_is_saved_converted_and_named(
    pytester: pytest.Pytester, expression: str, saved: Any, was: str, saved_as: str, verdict: str
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=1)
    pytester.makepyfile(
        test_agent=BODY.format(
            imports="",
            expression=expression,
            verdict="assert False, 'judges said no'" if verdict == "fail" else "pass",
        )
    )
    result = pytester.runpytest()
    expected = {"passed": 1} if verdict == "pass" else {"failed": 1}
    result.assert_outcomes(**expected, warnings=1)
    experiment_dir = only_experiment_dir(pytester)
    # The status is what the test said: a conversion is no error.
    assert statuses(experiment_dir) == {"T0/00/1": "passed" if verdict == "pass" else "failed"}
    data = _saved(experiment_dir)
    assert data["details"] == {"value": saved, "kept": "as is"}
    path = "details.value.1" if was.startswith("int key") else "details.value"
    conversions = data["expresume"]["conversions"]
    assert {"path": path, "was": was, "saved_as": saved_as} in conversions
    result.stdout.fnmatch_lines(
        [
            "test_agent.py::test_agent[[]T0-00-run_01[]]",
            f"*ExpresumeWarning: expresume: T0-00-run_01: * values of the result were saved "
            f"converted (JSON cannot hold them): *{path}: {was} -> {saved_as}*",
        ]
    )


def test_numpy_values_are_saved_as_numbers_and_lists(pytester: pytest.Pytester) -> None:
    if importlib.util.find_spec("numpy") is None:
        pytest.skip("numpy is not installed")
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=1)
    pytester.makepyfile(
        test_agent="""
        import numpy as np

        def test_agent(experiment_run):
            run = experiment_run
            run.result["mean"] = np.float64(0.5)
            run.result["count"] = np.int64(7)
            run.result["flag"] = np.bool_(True)
            run.result["scores"] = np.array([[1.0, np.nan], [0.25, 3.0]])
        """
    )
    # numpy's C core loads once per process, and an in-process session removes the modules
    # it imported: only a process of its own imports numpy here.
    pytester.runpytest_subprocess().assert_outcomes(passed=1, warnings=1)
    data = _saved(only_experiment_dir(pytester))
    assert data["mean"] == 0.5
    assert data["count"] == 7
    assert data["flag"] is True
    assert data["scores"] == [[1.0, "NaN"], [0.25, 3.0]]
    conversions = {c["path"]: (c["was"], c["saved_as"]) for c in data["expresume"]["conversions"]}
    flag_was, flag_saved_as = conversions.pop("flag")
    assert flag_was in ("numpy.bool", "numpy.bool_")  # numpy 2 and 1
    assert flag_saved_as == "boolean"
    assert conversions == {
        "mean": ("numpy.float64", "number"),
        "count": ("numpy.int64", "number"),
        "scores": ("numpy.ndarray", "list"),
        "scores.0.1": ("float nan", "NaN"),
    }


def test_a_string_with_lone_surrogates_is_saved_escaped_as_value_key_and_step(
    pytester: pytest.Pytester,
) -> None:
    # Model output decoded with errors="surrogateescape": orjson refuses it, and the run
    # was an error with its score gone, paid for again on every resume.
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=1)
    pytester.makepyfile(
        test_agent="""
        def test_agent(experiment_run):
            run = experiment_run
            said = b"model said \\xff".decode("utf-8", "surrogateescape")
            run.result["score"] = 0.5
            run.result["output"] = said
            run.result["by_output"] = {said: 1}
            run.result["echo"] = run.step("agent", lambda: said)
        """
    )
    pytester.runpytest().assert_outcomes(passed=1, warnings=1)
    experiment_dir = only_experiment_dir(pytester)
    assert statuses(experiment_dir) == {"T0/00/1": "passed"}
    escaped = "model said \\udcff"  # the escape's 6 characters, not the surrogate
    data = _saved(experiment_dir)
    assert data["score"] == 0.5
    assert data["output"] == data["echo"] == escaped
    assert data["by_output"] == {escaped: 1}
    step = json.loads((experiment_dir / "T0/00/run_01/steps/agent.json").read_bytes())
    assert step == escaped
    assert data["expresume"]["conversions"] == [
        {
            "path": "output",
            "was": "str with lone surrogates",
            "saved_as": "string (surrogates escaped)",
        },
        {
            "path": f"by_output.{escaped}",
            "was": "str key 'model said \\udcff'",
            "saved_as": "string key (surrogates escaped)",
        },
        {
            "path": "echo",
            "was": "str with lone surrogates",
            "saved_as": "string (surrogates escaped)",
        },
        {
            "path": "steps.agent",
            "was": "str with lone surrogates",
            "saved_as": "string (surrogates escaped)",
        },
    ]


def test_the_plugins_key_is_refused_and_the_tests_values_are_all_kept(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=1)
    pytester.makepyfile(
        test_agent="""
        def test_agent(experiment_run):
            experiment_run.result.update(
                {"score": 0.83, "expresume": {"mine": float("nan")}, "n": 3}
            )
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1, warnings=1)
    experiment_dir = only_experiment_dir(pytester)
    assert statuses(experiment_dir) == {"T0/00/1": "error"}
    data = _saved(experiment_dir)
    own = data.pop("expresume")
    assert data == {"score": 0.83, "expresume (2)": {"mine": "NaN"}, "n": 3}
    assert list(data) == ["score", "expresume (2)", "n"]  # where the test put it
    assert "may not use the key 'expresume' (the plugin's)" in own["message"]
    assert own["conversions"] == [
        {"path": "expresume", "was": "the plugin's key", "saved_as": "expresume (2)"},
        {"path": "expresume (2).mine", "was": "float nan", "saved_as": "NaN"},
    ]


def test_the_plugins_key_renamed_takes_a_free_name(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=1)
    pytester.makepyfile(
        test_agent="""
        def test_agent(experiment_run):
            experiment_run.result.update({"expresume": 1, "expresume (2)": 2})
        """
    )
    pytester.runpytest().assert_outcomes(passed=1, errors=1, warnings=1)
    data = _saved(only_experiment_dir(pytester))
    assert data["expresume (2)"] == 2
    assert data["expresume (3)"] == 1
    assert data["expresume"]["status"] == "error"


def test_a_set_whose_items_cannot_be_compared_is_saved_in_iteration_order() -> None:
    items = {decimal.Decimal("NaN"), decimal.Decimal(1)}  # sorting raises InvalidOperation
    encoded = encode_result({"votes": items})
    assert sorted(json.loads(encoded.data)["votes"]) == ["Decimal('1')", "Decimal('NaN')"]
    assert encoded.conversions[0] == Conversion("votes", "set", "list")


class _Unreadable(Mapping[str, int]):
    """A Mapping whose keys cannot be looked up: walking it raises."""

    def __getitem__(self, key: str) -> int:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(["a", "b"])

    def __len__(self) -> int:
        return 2

    def __repr__(self) -> str:
        return "<unreadable a, b>"


class _Unshowable(_Unreadable):
    def __repr__(self) -> str:
        raise RuntimeError("no")


class _Unwalkable(list[int]):
    def __iter__(self) -> Iterator[int]:
        raise OSError("gone")


def test_a_container_that_raises_while_walked_is_saved_as_its_repr() -> None:
    encoded = encode_result(
        {
            "score": 0.5,
            "unreadable": _Unreadable(),
            "unshowable": _Unshowable(),
            "unwalkable": {"x": float("nan"), "rows": _Unwalkable([1, 2])},
        }
    )
    assert json.loads(encoded.data) == {
        "score": 0.5,
        "unreadable": "<unreadable a, b>",
        "unshowable": "<_Unshowable object; its repr raised RuntimeError>",
        "unwalkable": {"x": "NaN", "rows": "[1, 2]"},
    }
    assert [c.to_json() for c in encoded.conversions] == [
        {
            "path": "unreadable",
            "was": "_Unreadable (converting it raised KeyError)",
            "saved_as": "string (repr)",
        },
        {
            "path": "unshowable",
            "was": "_Unshowable (converting it raised KeyError)",
            "saved_as": "string (repr)",
        },
        {"path": "unwalkable.x", "was": "float nan", "saved_as": "NaN"},
        {
            "path": "unwalkable.rows",
            "was": "_Unwalkable (converting it raised OSError)",
            "saved_as": "string (repr)",
        },
    ]


def test_escaped_keys_and_str_subclass_keys_keep_every_value() -> None:
    class Judge(str):
        pass

    # "\ud800" escaped is the key already there: both values are kept.
    encoded = encode_result({"\\ud800": 1, "\ud800": 2, Judge("opus"): 3})
    assert json.loads(encoded.data) == {"\\ud800": 1, "\\ud800 (str 2)": 2, "opus": 3}
    assert [c.path for c in encoded.conversions] == ["\\ud800 (str 2)"]


def test_a_repr_with_lone_surrogates_is_saved_escaped() -> None:
    class Said:
        def __repr__(self) -> str:
            return "said \udcff"

    encoded = encode_result({Said(): Said()})
    assert json.loads(encoded.data) == {"said \\udcff": "said \\udcff"}
    assert encoded.conversions[0].was == "Said key said \\udcff"


def test_a_plain_result_is_saved_as_written_without_conversions(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=1)
    pytester.makepyfile(
        test_agent="""
        def test_agent(experiment_run):
            experiment_run.result.update(
                {"score": 0.83, "n": 3, "ok": True, "none": None, "tags": ["a"], "d": {"x": 1}}
            )
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    data = _saved(only_experiment_dir(pytester))
    assert "conversions" not in data["expresume"]
    del data["expresume"]
    assert data == {"score": 0.83, "n": 3, "ok": True, "none": None, "tags": ["a"], "d": {"x": 1}}


#: Text with lone surrogates among ordinary characters (st.text() never draws one).
surrogate_text = st.builds(
    lambda before, surrogate, after: before + surrogate + after,
    st.text(max_size=3),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
    st.text(max_size=3),
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
odd_values = st.recursive(
    json_values
    | st.floats()
    | st.integers()
    | st.frozensets(st.integers(), max_size=3)
    | st.datetimes()
    | surrogate_text,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text() | st.integers() | surrogate_text, inner, max_size=3)
    ),
    max_leaves=15,
)


@given(json_values)
def test_json_values_are_saved_unchanged_and_unnamed(value: Any) -> None:
    encoded = encode_result(value)
    assert encoded.conversions == []
    assert json.loads(encoded.data) == value


@given(odd_values)
def test_any_value_is_saved_and_every_conversion_is_named(value: Any) -> None:
    encoded = encode_result(value)
    saved = json.loads(encoded.data)  # always valid JSON, nothing raised
    named: dict[str, int] = {}
    for conversion in encoded.conversions:
        kind = conversion.was.split()[0] if " key " not in conversion.was else "key"
        named[kind] = named.get(kind, 0) + 1
    assert named == _odd_parts(value)
    assert _size(saved) == _size(value)  # no value lost (a key clash included)


def _odd_parts(value: Any) -> dict[str, int]:
    """What a value holds that JSON cannot, by kind, as the conversions name them."""
    found: dict[str, int] = {}

    def count(kind: str) -> None:
        found[kind] = found.get(kind, 0) + 1

    def walk(item: Any) -> None:
        if isinstance(item, float) and not math.isfinite(item):
            count("float")
        elif isinstance(item, str):
            if re.search("[\ud800-\udfff]", item):
                count("str")
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if not -(2**63) <= item < 2**64:
                count("int")
        elif isinstance(item, (tuple, frozenset)):
            count(type(item).__name__)
            for part in item:
                walk(part)
        elif isinstance(item, list):
            for part in item:
                walk(part)
        elif isinstance(item, dict):
            for key, part in item.items():
                if not isinstance(key, str) or re.search("[\ud800-\udfff]", key):
                    count("key")
                walk(part)
        elif isinstance(item, datetime.datetime):
            count("datetime")

    walk(value)
    return found


def _size(value: Any) -> int:
    """How many values there are, containers and leaves."""
    if isinstance(value, dict):
        return 1 + sum(_size(v) for v in value.values())
    if isinstance(value, (list, tuple, frozenset)):
        return 1 + sum(_size(v) for v in value)
    return 1


def test_a_result_that_holds_itself_or_nests_too_deep_is_kept(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=1)
    pytester.makepyfile(
        test_agent="""
        def test_agent(experiment_run):
            run = experiment_run
            run.result["score"] = 0.5
            trace = {"step": 1}
            trace["parent"] = trace
            run.result["trace"] = trace
            deep = inner = []
            for _ in range(400):
                inner.append([])
                inner = inner[0]
            run.result["deep"] = deep
        """
    )
    pytester.runpytest().assert_outcomes(passed=1, warnings=1)
    data = _saved(only_experiment_dir(pytester))
    assert data["score"] == 0.5
    assert data["trace"] == {"step": 1, "parent": "{'step': 1, 'parent': {...}}"}
    conversions = data["expresume"]["conversions"]
    assert conversions[0] == {
        "path": "trace.parent",
        "was": "a container holding itself",
        "saved_as": "string (repr)",
    }
    assert conversions[1]["was"] == "nesting deeper than 100"
    assert conversions[1]["path"] == "deep" + ".0" * 99


def test_conversion_warnings_never_fail_a_run_under_filterwarnings_error(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=2)
    pytester.makeini("[pytest]\nexpresume_config = experiment.json\nfilterwarnings =\n    error\n")
    pytester.makepyfile(
        test_agent="""
        def test_agent(experiment_run):
            experiment_run.result["score"] = float("nan")
            assert experiment_run.run == 1, "the judges said no"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1, warnings=2)
    assert statuses(only_experiment_dir(pytester)) == {"T0/00/1": "passed", "T0/00/2": "failed"}
