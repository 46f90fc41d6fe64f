"""A test's result as JSON, whatever it holds: a paid-for result is never dropped for its form.

JSON holds objects with string keys, lists, strings, numbers (finite, 64-bit integers),
true, false and null. Anything else is converted, and every conversion is named:

- NaN and the infinities: the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
- sets and tuples: lists (a set's items sorted when they can be);
- numpy scalars and arrays: numbers and lists (numpy is not imported for this);
- datetimes, dates and times: ISO 8601 strings;
- dataclass instances: objects of their fields;
- enum members: their value; UUIDs: their string (as orjson saves them);
- keys that are not strings: ``str(key)``; integers beyond 64 bits: their decimal string;
- strings holding lone surrogates (text decoded with ``errors="surrogateescape"``), values or
  keys: the string with each surrogate written as its escape (``\\ud800``, 6 characters);
- a container that holds itself, or nesting deeper than JSON parsers take: the ``repr``
  string of what is below that point;
- anything else, and a value whose conversion raised (a mapping whose items cannot be read,
  say): its ``repr`` string.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

_INT_RANGE = range(-(2**63), 2**64)
#: orjson refuses nesting past 255 levels, and each level costs this encoder a few Python
#: frames: below this depth the rest is saved as a repr.
_MAX_DEPTH = 100
#: UTF-8 cannot hold a surrogate code point that is not part of a pair, and Python strings
#: hold only unpaired ones: any match is a string JSON (orjson) refuses.
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Conversion:
    """One value JSON could not hold, where it was and what was saved instead."""

    path: str
    was: str
    saved_as: str

    def to_json(self) -> dict[str, str]:
        """The entry under ``expresume.conversions``."""
        return {"path": self.path, "was": self.was, "saved_as": self.saved_as}


@dataclass
class EncodedResult:
    """The JSON bytes of a value, and what had to be converted on the way."""

    data: bytes
    conversions: list[Conversion] = field(default_factory=list)


def encode_result(value: Any) -> EncodedResult:
    """``value`` as JSON bytes; every value is kept, converted where JSON cannot hold it."""
    conversions: list[Conversion] = []
    plain = _Plain(conversions).of(value, "")
    # A conversion names the user's key or its repr, which may hold surrogates too: the
    # entries are saved as JSON and shown in a warning.
    return EncodedResult(orjson.dumps(plain), [_clean(c) for c in conversions])


def encode_run_result(result: dict[str, Any]) -> tuple[EncodedResult, str | None]:
    """A run's ``result`` encoded, with a test's own ``expresume`` key renamed (the plugin's
    fields are saved under it): its value is kept under the first free ``expresume (N)``,
    as the results export names a colliding key, named first among the conversions.
    Returns that name too (None: the test did not use the key)."""
    if "expresume" not in result:
        return encode_result(result), None
    n = 2
    while f"expresume ({n})" in result:
        n += 1
    name = f"expresume ({n})"
    encoded = encode_result(
        {(name if key == "expresume" else key): value for key, value in result.items()}
    )
    encoded.conversions.insert(0, Conversion("expresume", "the plugin's key", name))
    return encoded, name


def _join(path: str, part: object) -> str:
    return f"{path}.{part}" if path else str(part)


class _Plain:
    """Makes a value of JSON types only, recording each conversion at its path."""

    def __init__(self, conversions: list[Conversion]) -> None:
        self.conversions = conversions
        #: Containers on the path from the top to the value at hand (by id): a repeat is a cycle.
        self._open: set[int] = set()

    def of(self, value: Any, path: str) -> Any:
        mark = len(self.conversions)
        try:
            return self._of(value, path)
        except Exception as exc:
            # User code runs on the way (a Mapping's __getitem__, __iter__, a set's __lt__, a
            # numpy subclass's tolist): whatever it raises, the value is kept as its repr,
            # and the conversions of its parts, which were not saved, are not named.
            del self.conversions[mark:]
            was = f"{type(value).__name__} (converting it raised {type(exc).__name__})"
            return self._converted(_repr(value), path, was, "string (repr)")

    def _of(self, value: Any, path: str) -> Any:
        if type(value).__module__ == "numpy":  # before float: numpy.float64 is a float
            return self._numpy(value, path)
        if isinstance(value, str):
            if _SURROGATE.search(value) is None:
                return value
            return self._converted(
                _escaped(value), path, "str with lone surrogates", "string (surrogates escaped)"
            )
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, enum.Enum):
            kind = f"enum {type(value).__name__}"
            self.conversions.append(Conversion(path, kind, "its value"))
            return self.of(value.value, path)
        if isinstance(value, int):
            if value in _INT_RANGE:
                return int(value)
            return self._converted(str(value), path, "int beyond 64 bits", "string")
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            return self._converted(text, path, f"float {value!r}", text)
        if isinstance(value, uuid.UUID):
            return self._converted(str(value), path, "UUID", "string")
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
            return self._converted(
                value.isoformat(), path, type(value).__name__, "string (ISO 8601)"
            )
        if isinstance(value, (Mapping, list, tuple, set, frozenset)) or (
            dataclasses.is_dataclass(value) and not isinstance(value, type)
        ):
            return self._container(value, path)
        return self._converted(_repr(value), path, type(value).__name__, "string (repr)")

    def _container(self, value: Any, path: str) -> Any:
        if id(value) in self._open:
            return self._converted(
                _repr(value), path, "a container holding itself", "string (repr)"
            )
        if len(self._open) >= _MAX_DEPTH:
            return self._converted(
                _repr(value), path, f"nesting deeper than {_MAX_DEPTH}", "string (repr)"
            )
        self._open.add(id(value))
        try:
            return self._contents(value, path)
        finally:
            self._open.discard(id(value))

    def _contents(self, value: Any, path: str) -> Any:
        if isinstance(value, Mapping):
            return self._mapping(value, path)
        if isinstance(value, list):
            return [self.of(item, _join(path, i)) for i, item in enumerate(value)]
        if isinstance(value, (tuple, set, frozenset)):
            items = list(value)
            if not isinstance(value, tuple):
                # Mixed types (TypeError), Decimal NaN (InvalidOperation), a user's __lt__:
                # kept in iteration order.
                with contextlib.suppress(Exception):
                    items = sorted(items)
            self.conversions.append(Conversion(path, type(value).__name__, "list"))
            return [self.of(item, _join(path, i)) for i, item in enumerate(items)]
        self.conversions.append(Conversion(path, f"dataclass {type(value).__name__}", "object"))
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return self._mapping(fields, path)

    def _mapping(self, value: Mapping[Any, Any], path: str) -> dict[str, Any]:
        plain: dict[str, Any] = {}
        taken = {str.__str__(key) for key in value if _is_json_key(key)}
        for key, item in value.items():
            if _is_json_key(key):
                # A str subclass (a StrEnum member) is the same text, but orjson takes only
                # an exact str as a key.
                name = str.__str__(key)
            else:
                if isinstance(key, str):
                    base, saved_as = _escaped(key), "string key (surrogates escaped)"
                else:
                    base, saved_as = _escaped(str(key)), "string key"
                name = base
                n = 1
                while name in taken:  # {1: a, "1": b}: both values are kept
                    n += 1
                    name = f"{base} ({type(key).__name__} {n})"
                taken.add(name)
                was = f"{type(key).__name__} key {key!r}"
                self.conversions.append(Conversion(_join(path, name), was, saved_as))
            plain[name] = self.of(item, _join(path, name))
        return plain

    def _numpy(self, value: Any, path: str) -> Any:
        kind = f"numpy.{type(value).__name__}"
        if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
            self.conversions.append(Conversion(path, kind, "list"))
            return self.of(value.tolist(), path)
        if hasattr(value, "item"):
            item = value.item()
            saved_as = _JSON_KIND.get(type(item))
            if saved_as is not None:
                self.conversions.append(Conversion(path, kind, saved_as))
                return self.of(item, path)
        return self._converted(_repr(value), path, kind, "string (repr)")

    def _converted(self, saved: Any, path: str, was: str, saved_as: str) -> Any:
        self.conversions.append(Conversion(path, was, saved_as))
        return saved


#: What a numpy scalar's Python value is saved as.
_JSON_KIND: dict[type, str] = {bool: "boolean", int: "number", float: "number", str: "string"}


def _is_json_key(key: object) -> bool:
    return isinstance(key, str) and _SURROGATE.search(key) is None


def _escaped(text: str) -> str:
    """``text`` with each lone surrogate as its backslash escape: UTF-8 can hold that."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _clean(conversion: Conversion) -> Conversion:
    parts = (conversion.path, conversion.was, conversion.saved_as)
    if not any(_SURROGATE.search(part) for part in parts):
        return conversion
    return Conversion(*(_escaped(part) for part in parts))


def _repr(value: Any) -> str:
    """``repr(value)``, whatever its ``__repr__`` does: a result is never lost to it."""
    try:
        # A user's __repr__ may return lone surrogates (its repr is then saved escaped).
        return _escaped(str.__str__(repr(value)))
    except Exception as exc:  # a user's __repr__ may raise anything, RecursionError too
        return f"<{type(value).__name__} object; its repr raised {type(exc).__name__}>"
