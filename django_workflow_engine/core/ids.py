"""Identifier helpers."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """Return a 32-character, time-ordered, random hex identifier.

    The first 12 hex digits are the millisecond timestamp, so ids sort roughly by creation time and keep
    B-tree inserts local; the remaining 80 bits are random.
    """
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


def short_id(value: str) -> str:
    """The last eight characters of an id: what people read in logs and the admin."""
    return value[-8:]
