"""One transaction shared by the steps of several runs (``OrmPersistence.batch``).

A worker that executes several short stages in lockstep begins them all, and later records them all, in one
transaction instead of one each. At the start the runs are locked together, in id order, with one
``SELECT ... FOR UPDATE`` (and their stages read with one more, when asked). Inside, an ``atomic()`` block joins
the shared transaction instead of opening a savepoint, and the first :meth:`lock_run` and :meth:`get_stages` of
each run are answered from what was read at the start. Answers are given once per run: a run's own first step
is the only one that may use them, because before it nothing in the batch has written that run's rows (the
caller keeps runs whose steps write other runs' rows, a child's or a concurrency-limited one, out of a batch).

On PostgreSQL the deferred writes of all the steps then leave in one statement at the end (:mod:`.deferred`).
An exception that leaves a joined block marks the batch broken: the caller must then roll the whole transaction
back (let an exception leave :meth:`batch`) and take each step again on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..kernel.records import RunBatch, RunRecord, StageRecord

_OPEN = threading.local()  # the open batch of each database alias, per thread


def current(using: str) -> RunBatch | None:
    return _OPEN.__dict__.get(using)


def open_batch(using: str, opened: RunBatch) -> None:
    _OPEN.__dict__[using] = opened


def close_batch(using: str) -> None:
    _OPEN.__dict__.pop(using, None)


def marks(values: Sequence[object]) -> str:
    """``%s, %s, ...``: one placeholder per value, for ``IN (...)``."""
    return ", ".join(["%s"] * len(values))


@contextmanager
def joined(opened: RunBatch) -> Iterator[None]:
    """An ``atomic()`` block inside a batch: no savepoint; an exception leaving it breaks the batch."""
    try:
        yield
    except BaseException:
        opened.broken = True
        raise


def take_run(using: str, run_id: str) -> RunRecord | None:
    """The run as locked at the batch's start, once; ``None`` outside a batch or when already taken."""
    opened = current(using)
    return None if opened is None else opened.runs.pop(run_id, None)


def take_stages(using: str, run_id: str) -> list[StageRecord] | None:
    opened = current(using)
    return None if opened is None else opened.stages.pop(run_id, None)
