"""Checks that a value can be stored as JSON in every supported database.

PostgreSQL rejects ``\\u0000`` in ``text`` and ``jsonb``; no database can store NaN or Infinity in JSON; lone
surrogates cannot be encoded as UTF-8; integers of more than 4300 digits cannot be written as JSON text. Catching these before a write turns a database error deep inside a
transaction into a specific message naming the offending field.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 64
# Python refuses to turn integers of more than 4300 digits into text (int_max_str_digits), so json.dumps fails.
MAX_INT_DIGITS = 4300
_INT_LIMIT = 10**MAX_INT_DIGITS


class JSONValueError(ValueError):
    """``path`` names the offending element, e.g. ``items[3].name``."""

    def __init__(self, path: str, problem: str):
        self.path = path or "(root)"
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _check_str(value: str, path: str) -> None:
    if "\x00" in value:
        raise JSONValueError(path, "contains a NUL character (\\x00), which databases cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise JSONValueError(path, "contains a lone surrogate and is not valid UTF-8") from None


def check_json_value(value: Any, path: str = "", depth: int = 0) -> None:
    """Raise :class:`JSONValueError` unless ``value`` is plain, finite, storable JSON."""
    if depth > MAX_DEPTH:
        raise JSONValueError(path, f"is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) >= _INT_LIMIT:
            raise JSONValueError(
                path, f"is an integer of more than {MAX_INT_DIGITS} digits, which JSON text cannot hold"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise JSONValueError(path, f"is {value}, which JSON cannot represent")
        return
    if isinstance(value, str):
        _check_str(value, path)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise JSONValueError(path, f"has a non-string key {key!r}")
            _check_str(key, f"{path}.{key}" if path else key)
            check_json_value(item, f"{path}.{key}" if path else key, depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json_value(item, f"{path}[{index}]", depth + 1)
        return
    raise JSONValueError(path, f"is a {type(value).__name__}, which is not JSON-serialisable")
