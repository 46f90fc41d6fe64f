"""Direct tests of pytest_expresume.config: validation, parsing, the hash and the diff."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_expresume import layout
from pytest_expresume.config import (
    GRID_KEYS,
    PLUGIN_KEYS,
    ConfigError,
    canonical_json,
    changed_keys,
    check_spelling,
    config_hash,
    describe_change,
    freeze,
    grid_keys_of,
    is_config_hash_of,
    legacy_config_hash,
    load_config_file,
    merged_grid,
    parse_set_option,
    render_value,
    thaw,
    validate,
    with_grid,
)


def base(**overrides: Any) -> dict[str, Any]:
    """A valid config; overrides replace keys, a value of ``...`` removes the key."""
    experiment: dict[str, Any] = {
        "experiment_id": "test-001",
        "tiers": ["T0", "T1"],
        "subtests": ["00", "01"],
        "runs_per_subtest": 3,
    }
    experiment.update(overrides)
    return {k: v for k, v in experiment.items() if v is not ...}


def config_error(experiment: Any) -> str:
    with pytest.raises(ConfigError) as info:
        validate(experiment)
    return str(info.value)


# -- validate: the good cases --------------------------------------------------------------


def test_validate_reads_the_plugin_keys() -> None:
    spec = validate(
        base(max_subtests=1, runtime_keys=["timeout"], timeout=30, judges=["a", "b", "c"])
    )
    assert spec.experiment_id == "test-001"
    assert spec.tiers == ("T0", "T1")
    assert spec.subtests == ("00", "01")
    assert spec.runs_per_subtest == 3
    assert spec.max_subtests == 1
    assert spec.runtime_keys == frozenset({"timeout"})


def test_validate_defaults() -> None:
    spec = validate({"experiment_id": "e", "tiers": ["T0"]})
    assert spec.subtests is None
    assert spec.runs_per_subtest == 1
    assert spec.max_subtests is None
    assert spec.runtime_keys == frozenset()


def test_tiers_to_run_is_an_alias_of_tiers() -> None:
    spec = validate(base(tiers=..., tiers_to_run=["T3", "T1"]))
    assert spec.tiers == ("T3", "T1")


def test_subtests_mapping_per_tier() -> None:
    spec = validate(base(subtests={"T1": ["05", "02"]}))
    assert isinstance(spec.subtests, Mapping)
    assert dict(spec.subtests) == {"T1": ("05", "02")}


@pytest.mark.parametrize("name", ["T0", "00-empty", "a.b", "x_y", "...", "a..b", "-"])
def test_valid_names_are_accepted(name: str) -> None:
    assert validate(base(tiers=[name])).tiers == (name,)
    assert validate(base(subtests=[name])).subtests == (name,)


# -- validate: every bad value is a ConfigError naming it ----------------------------------


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", "a b", "/abs", "a\\b", "T0\n"])
@pytest.mark.parametrize("key", ["tiers", "subtests"])
def test_bad_names_are_refused_and_named(key: str, name: str) -> None:
    message = config_error(base(**{key: ["ok", name]}))
    assert json.dumps(name) in message
    assert key in message


def test_bad_name_in_subtests_mapping_is_named() -> None:
    message = config_error(base(subtests={"T0": ["00", "../escape"]}))
    assert '"../escape"' in message
    assert "T0" in message


def test_non_string_name_is_refused() -> None:
    message = config_error(base(tiers=["T0", 7]))
    assert "7" in message


@pytest.mark.parametrize("key", ["tiers", "subtests"])
def test_duplicate_names_are_refused_and_named(key: str) -> None:
    message = config_error(base(**{key: ["T0", "dup", "dup"]}))
    assert "dup" in message
    assert "twice" in message


def test_duplicate_in_subtests_mapping_is_refused() -> None:
    message = config_error(base(subtests={"T1": ["07", "07"]}))
    assert "07" in message


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("tiers", "T0", '"T0"'),
        ("tiers", [], "[]"),
        ("tiers", {"T0": 1}, '{"T0":1}'),
        ("tiers", None, "null"),
        ("subtests", "00", '"00"'),
        ("subtests", 3, "3"),
        ("subtests", [], "[]"),
    ],
)
def test_names_must_be_a_non_empty_list(key: str, value: Any, shown: str) -> None:
    message = config_error(base(**{key: value}))
    assert key in message
    assert shown in message


def test_subtests_mapping_naming_an_unknown_tier() -> None:
    message = config_error(base(subtests={"T0": ["00"], "T9": ["00"]}))
    assert "T9" in message
    assert "tiers" in message


def test_subtests_mapping_with_non_list_value() -> None:
    message = config_error(base(subtests={"T0": "00"}))
    assert '"00"' in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0, "0"), (-1, "-1"), ("3", '"3"'), (True, "true"), (1.5, "1.5"), (None, "null")],
)
def test_runs_per_subtest_must_be_a_positive_int(value: Any, shown: str) -> None:
    message = config_error(base(runs_per_subtest=value))
    assert "runs_per_subtest" in message
    assert shown in message


@pytest.mark.parametrize(
    ("value", "shown"), [(0, "0"), (-2, "-2"), ("1", '"1"'), (False, "false"), (2.0, "2.0")]
)
def test_max_subtests_must_be_a_positive_int_or_null(value: Any, shown: str) -> None:
    message = config_error(base(max_subtests=value))
    assert "max_subtests" in message
    assert shown in message


def test_max_subtests_null_is_allowed() -> None:
    assert validate(base(max_subtests=None)).max_subtests is None


def test_missing_experiment_id() -> None:
    message = config_error(base(experiment_id=...))
    assert "experiment_id" in message
    assert "missing" in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("a/b", '"a/b"'),
        ("../x", '"../x"'),
        ("", '""'),
        ("has space", '"has space"'),
        (5, "5"),
        (None, "null"),
        (["x"], '["x"]'),
        (".", "'.'"),
        ("..", "'..'"),
    ],
)
def test_malformed_experiment_id(value: Any, shown: str) -> None:
    message = config_error(base(experiment_id=value))
    assert "experiment_id" in message
    assert shown in message


def test_missing_tiers() -> None:
    message = config_error(base(tiers=...))
    assert "tiers" in message


def test_tiers_and_tiers_to_run_both_given() -> None:
    message = config_error(base(tiers_to_run=["T0"]))
    assert "tiers" in message
    assert "tiers_to_run" in message


@pytest.mark.parametrize("plugin_key", sorted(PLUGIN_KEYS - GRID_KEYS))
def test_runtime_keys_may_not_name_identity_keys(plugin_key: str) -> None:
    message = config_error(base(runtime_keys=["timeout", plugin_key]))
    assert plugin_key in message
    assert "runtime_keys" in message


@pytest.mark.parametrize(("value", "shown"), [("timeout", '"timeout"'), (["a", 1], '["a",1]')])
def test_runtime_keys_must_be_a_list_of_names(value: Any, shown: str) -> None:
    message = config_error(base(runtime_keys=value))
    assert "runtime_keys" in message
    assert shown in message


@pytest.mark.parametrize(
    ("value", "where", "shown"),
    [
        (math.nan, "score", "nan"),
        (math.inf, "score", "inf"),
        (-math.inf, "score", "-inf"),
        ([1, 2, math.nan], "score[2]", "nan"),
        ({"inner": {"deep": math.inf}}, "score.inner.deep", "inf"),
    ],
)
def test_non_finite_floats_are_refused(value: Any, where: str, shown: str) -> None:
    message = config_error(base(score=value))
    assert where in message
    assert shown in message


def test_nested_non_string_key_is_refused() -> None:
    message = config_error(base(weights={"a": {3: "x"}}))
    assert "weights.a" in message
    assert "3" in message


def test_top_level_non_string_key_is_refused() -> None:
    experiment: dict[Any, Any] = base()
    experiment[42] = "value"
    message = config_error(experiment)
    assert "42" in message


@pytest.mark.parametrize("value", [(1, 2), {1, 2}, b"bytes", object()])
def test_values_json_cannot_hold_are_refused(value: Any) -> None:
    message = config_error(base(thing=value))
    assert "thing" in message
    assert type(value).__name__ in message


def test_strings_json_cannot_encode_are_refused() -> None:
    message = config_error(base(note="bad \udcff byte"))
    assert "note" in message


def test_int_range_is_checked() -> None:
    assert validate(base(big=2**63 - 1, small=-(2**63)))
    message = config_error(base(huge=2**64))
    assert "huge" in message
    assert str(2**64) in message
    message = config_error(base(tiny=-(2**63) - 1))
    assert "tiny" in message


def test_config_that_is_not_an_object() -> None:
    message = config_error(["experiment_id", "x"])
    assert "list" in message


# -- parse_set_option -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("runs_per_subtest=3", ("runs_per_subtest", 3)),
        ('judges=["a", "b"]', ("judges", ["a", "b"])),
        ('model={"name": "x", "t": 0.5}', ("model", {"name": "x", "t": 0.5})),
        ("flag=true", ("flag", True)),
        ("nothing=null", ("nothing", None)),
        ("ratio=1.5", ("ratio", 1.5)),
        ('quoted="3"', ("quoted", "3")),
        ("thinking_mode=none", ("thinking_mode", "none")),
        ("model=claude-opus-4", ("model", "claude-opus-4")),
        ("expr=a=b", ("expr", "a=b")),
        ("empty=", ("empty", "")),
        ("nan=NaN", ("nan", "NaN")),
        (" padded = 7", ("padded", 7)),
    ],
)
def test_parse_set_option(text: str, expected: tuple[str, Any]) -> None:
    key, value = parse_set_option(text)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize("text", ["no_equals", "", "=value", "  =1"])
def test_parse_set_option_needs_key_and_equals(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_set_option(text)
    assert "KEY=VALUE" in str(info.value)
    assert repr(text) in str(info.value)


# -- load_config_file -------------------------------------------------------------------------


def test_load_config_file(tmp_path: Path) -> None:
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(base(judges=["a", "b"], temperature=0.0)))
    assert load_config_file(path) == base(judges=["a", "b"], temperature=0.0)


def test_load_config_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(path) in str(info.value)
    assert "does not exist" in str(info.value)


@pytest.mark.parametrize("content", ["{not json", "", '{"a": 1,}', "\xff"])
def test_load_config_file_not_json(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(path) in str(info.value)
    assert "not valid JSON" in str(info.value)


@pytest.mark.parametrize(
    ("content", "kind"), [("[1, 2]", "list"), ('"x"', "str"), ("3", "int"), ("null", "NoneType")]
)
def test_load_config_file_not_an_object(tmp_path: Path, content: str, kind: str) -> None:
    path = tmp_path / "list.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(path) in str(info.value)
    assert "object" in str(info.value)
    assert kind in str(info.value)


def test_load_config_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_file(tmp_path)
    assert str(tmp_path) in str(info.value)


# -- config_hash ------------------------------------------------------------------------------


def test_config_hash_format() -> None:
    digest = config_hash(base())
    assert digest.startswith("sha256:")
    hexpart = digest.removeprefix("sha256:")
    assert len(hexpart) == 64
    int(hexpart, 16)


def test_config_hash_is_order_independent() -> None:
    one = {"experiment_id": "e", "tiers": ["T0"], "model": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}
    two = {"model": {"b": [1, {"y": 2, "x": 1}], "a": 1}, "tiers": ["T0"], "experiment_id": "e"}
    assert list(one) != list(two)
    assert config_hash(one) == config_hash(two)


def test_config_hash_sees_every_identity_value() -> None:
    reference = config_hash(base(judges=["a", "b", "c"]))
    assert config_hash(base(judges=["a", "b"])) != reference
    assert config_hash(base(judges=["a", "c", "b"])) != reference
    assert config_hash(base(judges=["a", "b", "c"], thinking_mode="none")) != reference


def test_config_hash_tells_int_from_float() -> None:
    assert config_hash(base(temperature=1)) != config_hash(base(temperature=1.0))


def test_config_hash_excludes_runtime_keys() -> None:
    one = base(runtime_keys=["timeout", "workers"], timeout=60, workers=4)
    two = base(runtime_keys=["timeout", "workers"], timeout=3600)
    assert config_hash(one) == config_hash(two)
    # The declaration itself is part of the identity.
    assert config_hash(one) != config_hash(base(timeout=60, workers=4))
    # A key that is not declared runtime still counts.
    assert config_hash(base(runtime_keys=["timeout"], workers=1)) != config_hash(
        base(runtime_keys=["timeout"], workers=2)
    )


@pytest.mark.parametrize(
    "grid",
    [
        {"tiers": ["T0", "T1", "T2"]},
        {"tiers_to_run": ["T0"]},
        {"subtests": {"T0": ["00"], "T1": ["00", "01", "02"]}},
        {"runs_per_subtest": 5},
        {"max_subtests": 1},
        {"runs_per_subtest": ...},
    ],
)
def test_the_grid_is_not_part_of_the_identity(grid: dict[str, Any]) -> None:
    """A grid grows or shrinks in the same experiment: its keys leave the hash."""
    reference = base()
    changed = base(**grid)
    if "tiers_to_run" in grid:
        del changed["tiers"]
    assert config_hash(changed) == config_hash(reference)
    assert legacy_config_hash(changed) != legacy_config_hash(reference)


def test_a_grid_key_may_be_a_runtime_key() -> None:
    assert validate(base(runtime_keys=["runs_per_subtest"])).runtime_keys == {"runs_per_subtest"}


def test_an_experiments_hash_is_recognised_by_either_scheme() -> None:
    experiment = base(judges=["a"], runtime_keys=["timeout"], timeout=3)
    # What checkpoints made before grids could grow recorded: grid keys in the hash.
    old = legacy_config_hash(experiment)
    assert old != config_hash(experiment)
    assert is_config_hash_of(experiment, old)
    assert is_config_hash_of(experiment, config_hash(experiment))
    assert not is_config_hash_of(base(judges=["b"]), old)


def test_with_grid_replaces_the_grid_as_a_whole() -> None:
    saved = base(max_subtests=2, judges=["a"])
    given_grid = grid_keys_of({"tiers_to_run": ["T0"], "runs_per_subtest": 5, "judges": ["b"]})
    assert given_grid == {"runs_per_subtest": 5, "tiers_to_run": ["T0"]}
    assert with_grid(saved, given_grid) == {
        "experiment_id": "test-001",
        "judges": ["a"],
        "tiers_to_run": ["T0"],
        "runs_per_subtest": 5,
    }


@pytest.mark.parametrize(
    ("given", "grid"),
    [
        ({"tiers": ["T0", "T1", "T2"]}, {"tiers": ["T0", "T1", "T2"]}),
        ({"tiers_to_run": ["T0"]}, {"tiers_to_run": ["T0"]}),
        ({"runs_per_subtest": 5}, {"runs_per_subtest": 5}),
        ({"max_subtests": None}, {"max_subtests": None}),
        ({"judges": ["x"]}, {}),
    ],
)
def test_a_grid_setting_given_replaces_the_saved_one_and_the_rest_is_kept(
    given: dict[str, Any], grid: dict[str, Any]
) -> None:
    saved = base(max_subtests=1)
    expected = {k: v for k, v in saved.items() if k in GRID_KEYS}
    if "tiers_to_run" in grid:
        del expected["tiers"]
    expected.update(grid)
    assert merged_grid(saved, given) == expected


# -- changed_keys / describe_change -----------------------------------------------------------

LONG_JUDGES = ["claude-opus-4-5-20251101", "claude-sonnet-4-5-20250929", "claude-haiku-4-5"]


def test_changed_keys() -> None:
    saved = base(judges=LONG_JUDGES, thinking_mode="none", same={"a": [1]})
    given = base(judges=LONG_JUDGES[:2], same={"a": [1]}, extra=1)
    assert changed_keys(saved, given) == ["extra", "judges", "thinking_mode"]
    assert changed_keys(saved, given, ignore=frozenset({"judges"})) == ["extra", "thinking_mode"]
    assert changed_keys(saved, dict(saved)) == []


def test_changed_keys_tells_int_from_float() -> None:
    assert changed_keys({"t": 1}, {"t": 1.0}) == ["t"]
    assert changed_keys({"t": True}, {"t": 1}) == ["t"]


def test_describe_change_long_lists_show_sizes() -> None:
    line = describe_change("judges", {"judges": LONG_JUDGES}, {"judges": LONG_JUDGES[:2]})
    assert line == "judges: [3 items] -> [2 items]"


def test_describe_change_short_values_show_values() -> None:
    assert (
        describe_change("judges", {"judges": ["a", "b", "c"]}, {"judges": ["a", "b"]})
        == 'judges: ["a","b","c"] -> ["a","b"]'
    )
    assert describe_change("runs", {"runs": 3}, {"runs": 5}) == "runs: 3 -> 5"
    assert (
        describe_change("thinking_mode", {"thinking_mode": "none"}, {"thinking_mode": "high"})
        == 'thinking_mode: "none" -> "high"'
    )


def test_describe_change_absent_side() -> None:
    assert describe_change("thinking_mode", {"thinking_mode": "none"}, {}) == (
        'thinking_mode: "none" -> (absent)'
    )
    assert describe_change("x", {}, {"x": 1}) == "x: (absent) -> 1"


def test_describe_change_same_size_shows_content() -> None:
    old = ["model-number-one-aaaaaaaa", "model-number-two-bbbbbbbb"]
    new = ["model-number-one-aaaaaaaa", "model-number-three-cccccc"]
    line = describe_change("judges", {"judges": old}, {"judges": new})
    assert "model-number-two-bbbbbbbb" in line
    assert "model-number-three-cccccc" in line
    assert line.startswith("judges: ")


def test_render_value() -> None:
    assert render_value([1, 2]) == "[1,2]"
    assert render_value(list(range(50))) == "[50 items]"
    assert render_value({f"key{i}": i for i in range(10)}) == "{10 keys}"
    assert render_value("x" * 100) == "a string of 100 chars"
    assert render_value(None) == "null"


# -- freeze / thaw ----------------------------------------------------------------------------


def test_freeze_is_read_only_and_deep() -> None:
    value = {"judges": ["a", "b"], "model": {"name": "x", "params": [{"t": 1}]}}
    frozen = freeze(value)
    assert isinstance(frozen, MappingProxyType)
    assert frozen["judges"] == ("a", "b")
    assert isinstance(frozen["model"], MappingProxyType)
    assert isinstance(frozen["model"]["params"][0], MappingProxyType)
    with pytest.raises(TypeError):
        frozen["judges"] = []  # type: ignore[index]
    with pytest.raises(TypeError):
        frozen["model"]["name"] = "y"  # type: ignore[index]
    with pytest.raises(AttributeError):
        frozen["judges"].append("c")


def test_freeze_does_not_alias_the_original() -> None:
    value = {"model": {"name": "x"}, "judges": ["a"]}
    frozen = freeze(value)
    value["model"]["name"] = "changed"
    value["judges"].append("b")
    assert frozen["model"]["name"] == "x"
    assert frozen["judges"] == ("a",)


def test_thaw_inverts_freeze() -> None:
    value = {"judges": ["a", "b"], "model": {"name": "x", "params": [{"t": 1}, [2, 3]]}, "n": 1}
    thawed = thaw(freeze(value))
    assert thawed == value
    assert type(thawed["judges"]) is list
    assert type(thawed["model"]) is dict
    assert type(thawed["model"]["params"][1]) is list
    assert canonical_json(thawed) == canonical_json(value)


# -- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)

user_keys = st.text(min_size=1, max_size=12).filter(lambda k: k not in PLUGIN_KEYS)
user_parts = st.dictionaries(user_keys, json_values, max_size=6)


def same_json(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def reordered(value: Any) -> Any:
    """The same value with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


@settings(max_examples=150, deadline=None)
@given(user=user_parts)
def test_user_values_round_trip_through_the_saved_config(user: dict[str, Any]) -> None:
    experiment = {**base(), **user}
    validate(experiment)
    with tempfile.TemporaryDirectory() as directory:
        layout.save_config(Path(directory), experiment)
        loaded = layout.load_saved_config(Path(directory))
    assert loaded == experiment
    assert same_json(loaded, experiment)
    assert config_hash(loaded) == config_hash(experiment)


@settings(max_examples=150, deadline=None)
@given(user=user_parts)
def test_config_hash_is_stable_under_key_reordering(user: dict[str, Any]) -> None:
    experiment = {**base(), **user}
    assert config_hash(reordered(experiment)) == config_hash(experiment)
    assert canonical_json(reordered(experiment)) == canonical_json(experiment)


@settings(max_examples=100, deadline=None)
@given(user=user_parts, value=json_values)
def test_changing_a_user_value_changes_the_hash(user: dict[str, Any], value: Any) -> None:
    experiment = {**base(), **user, "probe": value}
    other = {**experiment, "probe": [value]}
    assert config_hash(other) != config_hash(experiment)
    assert changed_keys(experiment, other) == ["probe"]


# -- misspelled plugin keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("runs_per_subtests", "runs_per_subtest"),
        ("run_per_subtest", "runs_per_subtest"),
        ("tier", "tiers"),
        ("subtest", "subtests"),
        ("max_subtest", "max_subtests"),
        ("experiment-id", "experiment_id"),
        ("runtime_key", "runtime_keys"),
        ("tiers_to_runs", "tiers_to_run"),
        # Other case or separators: the same key whatever its ratio (runsPerSubtest was
        # 0.80 and RUNS_PER_SUBTEST 0.14 as written, and both passed as the user's own).
        ("runsPerSubtest", "runs_per_subtest"),
        ("RUNS_PER_SUBTEST", "runs_per_subtest"),
        ("Tiers", "tiers"),
        ("runs-per-subtest", "runs_per_subtest"),
        ("runspersubtest", "runs_per_subtest"),
        ("maxSubtests", "max_subtests"),
        ("ExperimentId", "experiment_id"),
        ("Subtest", "subtests"),
    ],
)
def test_a_key_close_to_one_of_ours_is_refused_suggesting_ours(key: str, meant: str) -> None:
    with pytest.raises(ConfigError, match=f"the key '{key}', .* did you mean '{meant}'\\?"):
        check_spelling(base(**{key: 5}))


@pytest.mark.parametrize(
    "key",
    [
        "judges",
        "models",
        "thinking_mode",
        "agent_timeout_seconds",
        "tier_names",
        "subtest_timeout",
        "runs",
        "seed",
        # Close to ours, but another word: dropping the separators would make
        # subtest_ids 0.89 to subtests.
        "subtests_dir",
        "SubtestsDir",
        "subtest_ids",
        "subtestIds",
        "runtimes",
        "experiment_tag",
    ],
)
def test_a_key_of_the_users_own_is_accepted(key: str) -> None:
    check_spelling(base(**{key: 5}))  # raises nothing


def test_a_misspelled_key_is_refused_before_its_absence_is() -> None:
    # "Tiers" alone used to give only "tiers is missing".
    with pytest.raises(ConfigError, match="did you mean 'tiers'"):
        check_spelling(base(tiers=..., Tiers=["T0"]))


def test_the_example_config_passes_the_spelling_check() -> None:
    example = Path(__file__).parent.parent / "examples" / "agent_eval" / "experiment.json"
    check_spelling(json.loads(example.read_text()))


def test_every_plugin_key_passes_the_spelling_check() -> None:
    check_spelling({key: 1 for key in PLUGIN_KEYS})
