"""ORM work from a thread that runs an event loop (an ``async def`` stage): Django refuses synchronous queries
there, so the work goes to a helper thread whose connection is closed when it is done."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def off_the_loop(fn: Callable[[], T]) -> T:
    """``fn()``, on a helper thread when this thread runs an event loop, else right here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    from django.db import close_old_connections

    def in_thread() -> T:
        try:
            return fn()
        finally:
            close_old_connections()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(in_thread).result()
