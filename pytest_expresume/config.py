"""The experiment config: loading, validation, the identity hash and a readable diff.

Pure logic, free of pytest: every problem is a :class:`ConfigError` whose message is meant
for the user as it is (the plugin turns it into ``pytest.UsageError``).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")

#: Keys the plugin reads; every other key belongs to the user.
PLUGIN_KEYS = frozenset(
    {
        "experiment_id",
        "tiers",
        "tiers_to_run",
        "subtests",
        "runs_per_subtest",
        "max_subtests",
        "runtime_keys",
    }
)


#: Keys that shape the grid: the work asked for, not the experiment's identity. They are
#: left out of the config hash, so that a grid grows (or shrinks) in the same experiment.
GRID_KEYS = frozenset({"tiers", "tiers_to_run", "subtests", "runs_per_subtest", "max_subtests"})


class ConfigError(ValueError):
    """A config that cannot be used; the message names the value and what is allowed."""


@dataclass(frozen=True)
class ExperimentSpec:
    """The plugin's reading of an experiment config (the raw dict stays the user's)."""

    experiment_id: str
    tiers: tuple[str, ...]
    #: ``None`` (ask the subtests hook), one list for every tier, or a mapping per tier.
    subtests: tuple[str, ...] | Mapping[str, tuple[str, ...]] | None
    runs_per_subtest: int
    max_subtests: int | None
    runtime_keys: frozenset[str]


def _short(value: Any) -> str:
    return orjson.dumps(value).decode()


def check_name(value: Any, what: str) -> str:
    """Return ``value`` if it can be a directory name, else raise ConfigError naming it."""
    if not isinstance(value, str) or value in (".", "..") or not NAME_PATTERN.fullmatch(value):
        raise ConfigError(
            f"{what} {_describe_value(value)} is not a valid name: "
            "use letters, digits, '.', '_' or '-' (not '.' or '..')"
        )
    return value


def _describe_value(value: Any) -> str:
    try:
        return _short(value)
    except TypeError:
        return repr(value)


def _check_names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{what} must be a non-empty list of names, got {_describe_value(value)}")
    names = tuple(check_name(item, f"{what} entry") for item in value)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{what} names {name!r} twice")
        seen.add(name)
    return names


def _check_positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be an integer >= 1, got {_describe_value(value)}")
    return value


def check_json_value(value: Any, where: str) -> None:
    """Raise ConfigError unless ``value`` survives a JSON round trip unchanged."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"{where} holds characters that are not valid UTF-8") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} is {value!r}, which JSON cannot hold")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where} has a non-string key {key!r}")
            check_json_value(key, f"a key of {where}")
            check_json_value(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_value(item, f"{where}[{index}]")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**64:
            raise ConfigError(f"{where} is {value}, too large for a JSON integer")
    elif value is not None and not isinstance(value, (str, bool, float)):
        raise ConfigError(f"{where} is a {type(value).__name__}, which JSON cannot hold")


#: How close (difflib's ratio) a user's key may come to one of ours before it is taken
#: for a misspelling of ours: ``runs_per_subtests`` (0.97) and ``tier`` (0.89) are;
#: ``subtests_dir`` (0.80 to ``subtests``) and ``subtest_ids`` (0.84) are names of the
#: user's own and are not.
MISSPELLING_RATIO = 0.85

_WORD_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _as_words(key: str) -> str:
    """``runsPerSubtest``, ``RUNS-PER-SUBTEST`` -> ``runs_per_subtest``: case and the
    separator style say nothing about which key was meant."""
    return _WORD_BREAK.sub("_", key).lower().replace("-", "_")


def _squashed(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


#: Our keys as :func:`_as_words` and :func:`_squashed` give them.
_OURS_AS_WORDS = {_as_words(key): key for key in sorted(PLUGIN_KEYS)}
_OURS_SQUASHED = {_squashed(key): key for key in sorted(PLUGIN_KEYS)}


def meant_key(key: str) -> str | None:
    """The plugin key that ``key`` misspells, or None when ``key`` may be the user's own.

    The same letters with other case or separators (``Tiers``, ``runsPerSubtest``,
    ``runs-per-subtest``) are always ours. Otherwise the ratio is taken between the keys
    with case and separators made alike but word breaks kept: dropping the breaks
    (``subtestids``) would bring a user's ``subtest_ids`` over the line.
    """
    if key in PLUGIN_KEYS:
        return None
    squashed = _OURS_SQUASHED.get(_squashed(key))
    if squashed is not None:
        return squashed
    close = difflib.get_close_matches(
        _as_words(key), list(_OURS_AS_WORDS), n=1, cutoff=MISSPELLING_RATIO
    )
    return _OURS_AS_WORDS[close[0]] if close else None


def check_spelling(experiment: Mapping[str, Any]) -> None:
    """Refuse a key that is not the plugin's but close to one of its keys (a misspelling).

    Such a key would be taken as the user's own and the plugin's default used in its place
    (``"runs_per_subtests": 5`` would give one run per subtest, without a word).
    """
    for key in experiment:
        if not isinstance(key, str):
            continue
        meant = meant_key(key)
        if meant is not None:
            raise ConfigError(
                f"the experiment config has the key {key!r}, which is not the plugin's: "
                f"did you mean {meant!r}? (a key of your own must not be this close to "
                "one of the plugin's: rename it)"
            )


def validate(experiment: Mapping[str, Any]) -> ExperimentSpec:
    """Check the keys the plugin reads and return its reading of them."""
    if not isinstance(experiment, Mapping):
        kind = type(experiment).__name__
        raise ConfigError(f"the experiment config must be a JSON object, got {kind}")
    for key, value in experiment.items():
        if not isinstance(key, str):
            raise ConfigError(f"the experiment config has a non-string key {key!r}")
        check_json_value(key, f"key {key!r}")
        check_json_value(value, key)

    if "experiment_id" not in experiment:
        raise ConfigError(
            "experiment_id is missing: give it in the config file or as "
            "--experiment-set experiment_id=NAME"
        )
    experiment_id = experiment["experiment_id"]
    if not isinstance(experiment_id, str) or not NAME_PATTERN.fullmatch(experiment_id):
        raise ConfigError(
            f"experiment_id {_describe_value(experiment_id)} is not valid: "
            "use letters, digits, '.', '_' or '-'"
        )
    if experiment_id in (".", ".."):
        raise ConfigError(f"experiment_id {experiment_id!r} is not valid")

    if "tiers" in experiment and "tiers_to_run" in experiment:
        raise ConfigError("give tiers or its alias tiers_to_run, not both")
    tiers_key = "tiers" if "tiers" in experiment else "tiers_to_run"
    if tiers_key not in experiment:
        raise ConfigError("tiers is missing: give the list of tier names")
    tiers = _check_names(experiment[tiers_key], tiers_key)

    subtests: tuple[str, ...] | Mapping[str, tuple[str, ...]] | None = None
    raw_subtests = experiment.get("subtests")
    if isinstance(raw_subtests, Mapping):
        per_tier: dict[str, tuple[str, ...]] = {}
        for tier, names in raw_subtests.items():
            if tier not in tiers:
                raise ConfigError(
                    f"subtests names tier {tier!r}, which is not in {tiers_key} "
                    f"{_short(list(tiers))}"
                )
            per_tier[tier] = _check_names(names, f"subtests of {tier}")
        subtests = MappingProxyType(per_tier)
    elif raw_subtests is not None:
        subtests = _check_names(raw_subtests, "subtests")

    runs = _check_positive_int(experiment.get("runs_per_subtest", 1), "runs_per_subtest")
    max_subtests = experiment.get("max_subtests")
    if max_subtests is not None:
        max_subtests = _check_positive_int(max_subtests, "max_subtests")

    raw_runtime = experiment.get("runtime_keys", [])
    if not isinstance(raw_runtime, list) or not all(isinstance(k, str) for k in raw_runtime):
        raise ConfigError(f"runtime_keys must be a list of key names, got {_short(raw_runtime)}")
    identity = sorted((PLUGIN_KEYS - GRID_KEYS).intersection(raw_runtime))
    if identity:
        raise ConfigError(
            f"runtime_keys may not name {', '.join(identity)}: they define the experiment's "
            "identity"
        )
    return ExperimentSpec(
        experiment_id=experiment_id,
        tiers=tiers,
        subtests=subtests,
        runs_per_subtest=runs,
        max_subtests=max_subtests,
        runtime_keys=frozenset(raw_runtime),
    )


def runtime_keys_of(experiment: Mapping[str, Any]) -> frozenset[str]:
    """The runtime keys a config declares (tolerant: used on saved configs too)."""
    raw = experiment.get("runtime_keys", [])
    if isinstance(raw, list):
        return frozenset(k for k in raw if isinstance(k, str))
    return frozenset()


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: equal values give equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def config_hash(experiment: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the config without its runtime and grid keys."""
    left_out = runtime_keys_of(experiment) | GRID_KEYS
    identity = {k: v for k, v in experiment.items() if k not in left_out}
    return "sha256:" + hashlib.sha256(canonical_json(identity)).hexdigest()


def legacy_config_hash(experiment: Mapping[str, Any]) -> str:
    """The hash as experiments made before grids could grow have it (grid keys included)."""
    runtime = runtime_keys_of(experiment)
    identity = {k: v for k, v in experiment.items() if k not in runtime}
    return "sha256:" + hashlib.sha256(canonical_json(identity)).hexdigest()


def is_config_hash_of(experiment: Mapping[str, Any], recorded: str) -> bool:
    """Whether ``recorded`` (a checkpoint's hash) is this config's, by either scheme."""
    return recorded in (config_hash(experiment), legacy_config_hash(experiment))


def grid_keys_of(experiment: Mapping[str, Any]) -> dict[str, Any]:
    """The grid keys a config has, as it has them."""
    return {k: experiment[k] for k in sorted(GRID_KEYS) if k in experiment}


#: Grid keys that are one setting (``tiers_to_run`` is an alias of ``tiers``).
_GRID_SETTINGS = (
    ("tiers", "tiers_to_run"),
    ("subtests",),
    ("runs_per_subtest",),
    ("max_subtests",),
)


def merged_grid(saved: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The grid keys of ``saved`` with each setting ``given`` has replaced by its value (a
    setting not given keeps the saved value; ``"max_subtests": null`` lifts a limit)."""
    grid = grid_keys_of(saved)
    for names in _GRID_SETTINGS:
        if any(name in given for name in names):
            for name in names:
                grid.pop(name, None)
                if name in given:
                    grid[name] = given[name]
    return dict(sorted(grid.items()))


def with_grid(experiment: Mapping[str, Any], grid: Mapping[str, Any]) -> dict[str, Any]:
    """``experiment`` with its grid keys replaced, as a whole, by ``grid``."""
    kept = {k: v for k, v in experiment.items() if k not in GRID_KEYS}
    return {**kept, **grid}


_ABSENT = object()


def render_value(value: Any, limit: int = 40) -> str:
    """A short rendering: the JSON when short, else a size like ``[3 items]``."""
    if value is _ABSENT:
        return "(absent)"
    text = _short(value)
    if len(text) <= limit:
        return text
    if isinstance(value, list):
        return f"[{len(value)} items]"
    if isinstance(value, Mapping):
        return f"{{{len(value)} keys}}"
    if isinstance(value, str):
        return f"a string of {len(value)} chars"
    return text[: limit - 3] + "..."


def changed_keys(
    saved: Mapping[str, Any], given: Mapping[str, Any], ignore: frozenset[str] = frozenset()
) -> list[str]:
    """Top-level keys whose value differs (present on one side only counts), sorted."""
    return sorted(
        k
        for k in (set(saved) | set(given)) - ignore
        if k not in saved or k not in given or canonical_json(saved[k]) != canonical_json(given[k])
    )


def describe_change(key: str, saved: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """One line: ``judges: [3 items] -> [2 items]``, or the values when short."""
    old = saved.get(key, _ABSENT)
    new = given.get(key, _ABSENT)
    old_text, new_text = render_value(old), render_value(new)
    if old_text == new_text:
        # Same size but different content: show the values, cut, so the change is visible.
        old_text, new_text = render_value(old, 200), render_value(new, 200)
    return f"{key}: {old_text} -> {new_text}"


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a JSON experiment config file; a missing or malformed file is a ConfigError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"experiment config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"experiment config file {path} cannot be read: {exc.strerror}") from None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"experiment config file {path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"experiment config file {path} must hold a JSON object, not a {type(value).__name__}"
        )
    return value


def parse_set_option(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE``: VALUE as JSON if it parses, else as a plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--experiment-set expects KEY=VALUE, got {text!r}")
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return key, value


def freeze(value: Any) -> Any:
    """A read-only deep view: mappings become MappingProxyType, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The JSON-ready inverse of :func:`freeze`."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value
