"""A test's result as JSON, whatever it holds: a paid-for result is never dropped for its form.

JSON holds objects with string keys, lists, strings, numbers (finite, 64-bit integers),
true, false and null. Anything else is converted, and every conversion is named:

- NaN and the infinities: the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
- sets and tuples: lists (a set's items sorted when they can be);
- numpy scalars and arrays: numbers and lists (numpy is not imported for this);
- datetimes, dates and times: ISO 8601 strings;
- dataclass instances: objects of their fields;
- keys that are not strings: ``str(key)``; integers beyond 64 bits: their decimal string;
- anything else: its ``repr`` string.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

_INT_RANGE = range(-(2**63), 2**64)


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
    plain = _plain(value, "", conversions)
    return EncodedResult(orjson.dumps(plain), conversions)


def _join(path: str, part: object) -> str:
    return f"{path}.{part}" if path else str(part)


def _plain(value: Any, path: str, conversions: list[Conversion]) -> Any:
    """``value`` made of JSON types only (recording each conversion at its path)."""
    if type(value).__module__ == "numpy":  # before float: numpy.float64 is a float
        return _plain_numpy(value, path, conversions)
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if value in _INT_RANGE:
            return value
        return _converted(str(value), path, "int beyond 64 bits", "string", conversions)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return _converted(text, path, f"float {value!r}", text, conversions)
    if isinstance(value, Mapping):
        return _plain_mapping(value, path, conversions)
    if isinstance(value, list):
        return [_plain(item, _join(path, i), conversions) for i, item in enumerate(value)]
    if isinstance(value, (tuple, set, frozenset)):
        items = list(value)
        if not isinstance(value, tuple):
            with contextlib.suppress(TypeError):  # mixed types: kept in iteration order
                items = sorted(items)
        conversions.append(Conversion(path, type(value).__name__, "list"))
        return [_plain(item, _join(path, i), conversions) for i, item in enumerate(items)]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        text = value.isoformat()
        return _converted(text, path, type(value).__name__, "string (ISO 8601)", conversions)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        conversions.append(Conversion(path, f"dataclass {type(value).__name__}", "object"))
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _plain_mapping(fields, path, conversions)
    text = repr(value)
    return _converted(text, path, type(value).__name__, "string (repr)", conversions)


def _plain_mapping(
    value: Mapping[Any, Any], path: str, conversions: list[Conversion]
) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    taken = {key for key in value if isinstance(key, str)}
    for key, item in value.items():
        name = key
        if not isinstance(key, str):
            name = str(key)
            n = 1
            while name in taken:  # {1: a, "1": b}: both values are kept
                n += 1
                name = f"{key} ({type(key).__name__} {n})"
            taken.add(name)
            was = f"{type(key).__name__} key {key!r}"
            conversions.append(Conversion(_join(path, name), was, "string key"))
        plain[name] = _plain(item, _join(path, name), conversions)
    return plain


def _plain_numpy(value: Any, path: str, conversions: list[Conversion]) -> Any:
    kind = f"numpy.{type(value).__name__}"
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
        conversions.append(Conversion(path, kind, "list"))
        return _plain(value.tolist(), path, conversions)
    if hasattr(value, "item"):
        conversions.append(Conversion(path, kind, "number"))
        return _plain(value.item(), path, conversions)
    text = repr(value)
    return _converted(text, path, kind, "string (repr)", conversions)


def _converted(
    saved: Any, path: str, was: str, saved_as: str, conversions: list[Conversion]
) -> Any:
    conversions.append(Conversion(path, was, saved_as))
    return saved
