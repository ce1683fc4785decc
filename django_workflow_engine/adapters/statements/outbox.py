"""The outbox's statements (events appended in order per run), the advisory locks of concurrency limits, the
one statement that carries a transaction's deferred writes, and the database transport's doorbell."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ...models import OutboxEvent, WorkflowRun
from .core import q, table

# -- the outbox -----------------------------------------------------------------------------------------------

# The name under which a deferred write reads the rows of its auxiliary statement (:class:`.deferred.Write`).
AUX = "__dwe_aux__"


def reserve_event_sequences(sets: str = "", where: str = "") -> str:
    """reserve_event_sequences -- Advance one run's event counter by %s and return its new value.

    The UPDATE row-locks the run until the transaction ends, so concurrent writers of one run take turns. With
    ``sets`` and ``where`` (a queued update of the run, :func:`.deferred.take_row_update`) it applies that update
    too: ``SET <sets>, event_seq = event_seq + %s WHERE <where>``, so a run's completion and its events are one
    statement."""
    seq = q("event_seq")
    assign = f"{sets}, " if sets else ""
    where = where or f"{q('id')} = %s"
    return f"UPDATE {table(WorkflowRun)} SET {assign}{seq} = {seq} + %s WHERE {where} RETURNING {seq}"


def reserve_event_sequences_of_runs(count: int) -> str:
    """reserve_event_sequences_of_runs -- Advance the event counters of ``count`` runs by %s, returning (id, counter).

    ``start_many`` on SQLite (one per distinct event count, in chunks under the bound-parameter limit)."""
    seq = q("event_seq")
    return (
        f"UPDATE {table(WorkflowRun)} SET {seq} = {seq} + %s "
        f"WHERE {q('id')} IN ({', '.join(['%s'] * count)}) RETURNING {q('id')}, {seq}"
    )


def append_events(
    connection: Any, run_id: str, items: Sequence[Mapping[str, Any]], causation_id: str
) -> tuple[str, list[Any], str, list[Any]]:
    """append_events -- Reserve a run's next sequences and insert its events (PostgreSQL, one statement).

    Returns the reserving UPDATE and the INSERT, which reads the reserved counter under the name :data:`AUX`:
    run as ``WITH seq AS (UPDATE run ... RETURNING event_seq) INSERT INTO outbox SELECT ... FROM seq, VALUES``,
    or deferred (:mod:`.deferred`). Nothing is inserted when the run row does not exist."""
    meta = OutboxEvent._meta
    payload_field = meta.get_field("payload")
    occurred_field = meta.get_field("occurred_at")
    values_sql = []
    insert_params: list[Any] = [run_id, len(items), causation_id]
    for offset, event in enumerate(items):
        occurred_at = occurred_field.get_db_prep_save(datetime.fromisoformat(event["timestamp"]), connection)
        values_sql.append("(%s::integer, %s::timestamptz, %s, %s::jsonb)")
        insert_params += [offset, occurred_at, event["type"], payload_field.get_db_prep_save(dict(event), connection)]
    columns = ", ".join(
        q(c) for c in ("created_at", "run_id", "sequence", "event_type", "payload", "causation_id", "occurred_at")
    )
    insert = (
        f"INSERT INTO {table(OutboxEvent)} ({columns}, {q('retry_count')}) "
        f"SELECT v.occurred_at, %s, {AUX}.event_seq - %s + 1 + v.k, v.event_type, v.payload, %s, v.occurred_at, 0 "
        f"FROM {AUX}, (VALUES {', '.join(values_sql)}) AS v(k, occurred_at, event_type, payload)"
    )
    return reserve_event_sequences(), [len(items), run_id], insert, insert_params


def with_aux(aux_sql: str, sql: str) -> str:
    """with_aux -- Run ``sql`` reading the rows of its auxiliary statement ``aux_sql`` (under :data:`AUX`) at once."""
    return f"WITH aux AS ({aux_sql}) {sql.replace(AUX, 'aux')}"


def lock_outbox_of_run(run_id: str) -> tuple[str, list[Any]]:
    """lock_outbox_of_run -- Serialize the appends to a run that has no row (PostgreSQL advisory lock)."""
    return "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"dwe-outbox:{run_id}"]


# -- concurrency limits ---------------------------------------------------------------------------------------


def lock_concurrency_key(workflow_id: str, key: str) -> tuple[str, list[Any]]:
    """lock_concurrency_key -- Serialize admissions under one (workflow, concurrency key) (PostgreSQL)."""
    return "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"dwe-run:{workflow_id}:{key}"]


def lock_stage_limit(workflow_id: str, stage_id: str) -> tuple[str, list[Any]]:
    """lock_stage_limit -- Serialize admissions to one stage's cluster-wide limit (PostgreSQL)."""
    return "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"dwe-stage:{workflow_id}:{stage_id}"]


# -- deferred writes ------------------------------------------------------------------------------------------


def combined_writes(writes: Sequence[Any], notify: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """combined_writes -- Run queued writes as one statement and count each one's rows (PostgreSQL).

    ``WITH w0 AS (UPDATE ... RETURNING 1), w1 AS (INSERT ... RETURNING 1) SELECT (SELECT count(*) FROM w0), ...``
    (a write's auxiliary statement becomes ``a<n>``, read in place of :data:`AUX`): :func:`.deferred.flush`.
    Each channel of ``notify`` adds a ``pg_notify`` column after the counts."""
    ctes: list[str] = []
    params: list[Any] = []
    selects: list[str] = []
    for n, write in enumerate(writes):
        main = write.sql
        if write.aux_sql is not None:
            ctes.append(f"a{n} AS ({write.aux_sql})")
            params += write.aux_params
            main = main.replace(AUX, f"a{n}")
        ctes.append(f"w{n} AS ({main} RETURNING 1)")
        params += write.params
        selects.append(f"(SELECT count(*) FROM w{n})")
    for channel in notify:
        selects.append("pg_notify(%s, '')")  # as in notify()
        params.append(channel)
    return f"WITH {', '.join(ctes)} SELECT {', '.join(selects)}", params


# -- the database transport's doorbell (PostgreSQL) -----------------------------------------------------------


def notify() -> str:
    """notify -- Wake the connections listening on channel %s when this transaction commits."""
    return "SELECT pg_notify(%s, '')"


def listen(channel: str) -> str:
    """listen -- Receive ``channel``'s notifications on this connection (a fixed identifier, never user input)."""
    return f"LISTEN {channel}"
