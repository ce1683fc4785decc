"""ORM persistence of the outbox: events appended in order per run, published, retried, dead-lettered (a part of
:class:`~.persistence.OrmPersistence`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Max

from ..core.errors import RunNotFound, WorkflowEngineError
from ..kernel.records import (
    OutboxRecord,
)
from ..models import (
    OutboxEvent,
    WorkflowRun,
)
from . import deferred
from .cursors import hot_cursor
from .rows import outbox_record
from .sqlite import guard_public_methods
from .statements import (
    append_events,
    json_insert,
    lock_outbox_of_run,
    reserve_event_sequences,
    reserve_event_sequences_of_runs,
    with_aux,
)
from .store import OrmStore, expect_rows


def _both(update_check: Callable[[int], None] | None, events_check: Callable[[int], None]) -> Callable[[int], None]:
    """The check of an append that carries a run update: the update's (its row was found: some event row was
    inserted) first, then the append's own."""

    def check(count: int) -> None:
        if update_check is not None:
            update_check(1 if count else 0)
        events_check(count)

    return check


@guard_public_methods
class OrmOutbox(OrmStore):
    """The outbox of events."""

    # -- outbox ---------------------------------------------------------------------------------------------
    def append_events(self, events: Sequence[Mapping[str, Any]], causation_id: str) -> None:
        if not events:
            return
        by_run: dict[str, list[Mapping[str, Any]]] = {}
        for event in events:
            by_run.setdefault(event["workflow_run_id"], []).append(event)
        rows = []
        if deferred.deferring(self.using):
            by_run = self._append_to_new_runs(by_run, causation_id)
            if not by_run:
                return
        # savepoint=False: inside the caller's transaction this adds no SAVEPOINT round trips.
        with transaction.atomic(using=self.using, savepoint=False):
            one_statement = self._dialect.one_statement_append
            reserved = {} if one_statement or len(by_run) == 1 else self._reserve_many(by_run)
            for run_id, items in by_run.items():
                if one_statement and self._append_in_one_statement(run_id, items, causation_id):
                    continue
                last = reserved.get(run_id)
                first = (self._reserve_sequences(run_id, len(items)) if last is None else last) - len(items) + 1
                for offset, event in enumerate(items):
                    occurred_at = datetime.fromisoformat(event["timestamp"])
                    rows.append(
                        OutboxEvent(
                            created_at=occurred_at,
                            run_id=run_id,
                            sequence=first + offset,
                            event_type=event["type"],
                            payload=dict(event),
                            causation_id=causation_id,
                            occurred_at=occurred_at,
                        )
                    )
            if rows:  # (the one-statement appends leave none; a queryset costs more than their statement here)
                self._objects(OutboxEvent).bulk_create(rows)

    def _append_to_new_runs(
        self, by_run: dict[str, list[Mapping[str, Any]]], causation_id: str
    ) -> dict[str, list[Mapping[str, Any]]]:
        """Defer the events of runs whose INSERT is still queued (created in this transaction) as one multi-row
        outbox INSERT with their sequences written out, advancing each new run's ``event_seq`` in its queued
        INSERT (:func:`.deferred.advance_counter`): no ``UPDATE`` of a row that does not exist yet. Returns the
        events of the other runs, for the usual path."""
        table = WorkflowRun._meta.db_table
        rest: dict[str, list[Mapping[str, Any]]] = {}
        rows = []
        for run_id, items in by_run.items():
            before = deferred.advance_counter(self.using, table, run_id, len(items))
            if before is None:
                rest[run_id] = items
                continue
            for offset, event in enumerate(items):
                rows.append(
                    {
                        "created_at": event["timestamp"],
                        "run_id": run_id,
                        "sequence": before + 1 + offset,
                        "event_type": event["type"],
                        "payload": dict(event),
                        "causation_id": causation_id,
                        "occurred_at": event["timestamp"],
                        "retry_count": 0,
                    }
                )
        if rows:
            sql, params = json_insert(self.using, OutboxEvent, rows)
            error = WorkflowEngineError(f"Could not insert {len(rows)} outbox event(s).")
            deferred.defer(self.using, deferred.Write(sql, params, check=expect_rows(len(rows), error)))
        return rest

    def _append_in_one_statement(self, run_id: str, items: Sequence[Mapping[str, Any]], causation_id: str) -> bool:
        """PostgreSQL: reserve the run's next sequences and insert its events in one statement
        (``WITH seq AS (UPDATE run ... RETURNING event_seq) INSERT INTO outbox SELECT ... FROM seq, VALUES``).
        False, with nothing written, when the run row does not exist. Deferred (:mod:`.deferred`) when writes
        are; a missing run then raises ``RunNotFound`` at the flush."""
        connection = connections[self.using]
        reserve, reserve_params, insert, insert_params = append_events(connection, run_id, items, causation_id)
        if deferred.deferring(self.using):
            run_table = WorkflowRun._meta.db_table
            rows = frozenset({(run_table, run_id)})
            check = expect_rows(len(items), RunNotFound(run_id))
            queued = deferred.take_row_update(self.using, run_table, run_id)
            if queued is not None and queued.row_update is not None:
                # The run's queued update (its completion) rides on the counter's UPDATE: one statement, not two.
                update = queued.row_update
                reserve = reserve_event_sequences(update.sets, update.where)
                reserve_params = [*update.set_params, len(items), *update.where_params]
                check = _both(queued.check, check)
            deferred.defer(self.using, deferred.Write(insert, insert_params, rows, check, reserve, reserve_params))
            return True
        with hot_cursor(connection) as cursor:
            cursor.execute(with_aux(reserve, insert), reserve_params + insert_params)
            return cursor.rowcount > 0

    def _reserve_many(self, by_run: Mapping[str, Sequence[Any]]) -> dict[str, int]:
        """:meth:`_reserve_sequences` for many runs: one ``UPDATE ... WHERE id IN (...) RETURNING`` per distinct
        event count (``start_many`` appends two events to each of a thousand runs). Runs without a row are left
        out, for :meth:`_reserve_sequences` to handle."""
        connection = connections[self.using]
        by_count: dict[int, list[str]] = {}
        for run_id, items in by_run.items():
            by_count.setdefault(len(items), []).append(run_id)
        reserved: dict[str, int] = {}
        with connection.cursor() as cursor:
            for count, ids in by_count.items():
                for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
                    chunk = ids[start : start + 500]
                    cursor.execute(reserve_event_sequences_of_runs(len(chunk)), [count, *chunk])
                    reserved.update((run_id, int(seq)) for run_id, seq in cursor.fetchall())
        return reserved

    def _reserve_sequences(self, run_id: str, count: int) -> int:
        """Advance the run's event counter by ``count`` and return its new value (the last sequence reserved).

        The UPDATE row-locks the run until the transaction ends, so concurrent writers for one run take turns
        and their sequences never collide or leave gaps (a rollback undoes the counter with the events).
        """
        connection = connections[self.using]
        with connection.cursor() as cursor:
            cursor.execute(reserve_event_sequences(), [count, run_id])
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
        # No run row (e.g. deleted): continue from the highest stored sequence, serialized per run id.
        if self._dialect.advisory_locks:
            with connection.cursor() as cursor:
                cursor.execute(*lock_outbox_of_run(run_id))
        top = self._objects(OutboxEvent).filter(run_id=run_id).aggregate(m=Max("sequence"))["m"] or 0
        return top + count

    def get_unpublished_events(self, limit: int) -> list[OutboxRecord]:
        rows = (
            self._objects(OutboxEvent)
            .filter(published_at__isnull=True, dlq_at__isnull=True)
            .order_by("run_id", "sequence")[:limit]
        )
        return [outbox_record(r) for r in rows]

    def get_events(self, run_id: str) -> list[OutboxRecord]:
        return [outbox_record(r) for r in self._objects(OutboxEvent).filter(run_id=run_id).order_by("sequence")]

    def mark_events_published(self, ids: Iterable[int], now: datetime) -> None:
        self._objects(OutboxEvent).filter(pk__in=list(ids)).update(published_at=now)

    def record_event_failure(self, event_id: int, max_retries: int, now: datetime, error: str | None = None) -> bool:
        qs = self._objects(OutboxEvent).filter(pk=event_id)
        with transaction.atomic(using=self.using):
            if not qs.update(retry_count=F("retry_count") + 1, last_error=error):
                return False
            return bool(qs.filter(retry_count__gte=max_retries).update(dlq_at=now))

    def replay_dead_letters(self, limit: int, event_ids: Iterable[int] | None = None) -> int:
        events = self._objects(OutboxEvent)
        with transaction.atomic(using=self.using):
            dead = events.filter(dlq_at__isnull=False)
            if event_ids is not None:
                dead = dead.filter(pk__in=list(event_ids))
            ids = list(dead.order_by("run_id", "sequence").values_list("pk", flat=True)[:limit])
            return events.filter(pk__in=ids).update(dlq_at=None, retry_count=0) if ids else 0
