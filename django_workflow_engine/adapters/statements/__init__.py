"""Every SQL statement the engine writes by hand, in one place: this package (``core``: the hot path's reads,
updates, claims and inserts, and the SQLite session statements; ``outbox``: event appends, advisory locks, deferred
writes; ``admin``: large-table counts).

The hot path (claims, the reads and writes of every stage, outbox appends) runs these instead of ORM queries:
building a query with the ORM cost more than running it (``benchmarks/queries.py``). Everything else uses the
ORM. Each statement is a function (or a constant) named after what it does, like an entry of a named-query file:
the first line of its docstring is ``name -- what the statement does``, the rest says where it is used. It returns
``(sql, params)``, or only the SQL text when the caller supplies the values. Values pass through the model
fields' ``get_db_prep_save``, never into the text. Identifiers are quoted one way, :func:`q`; what differs
between PostgreSQL and SQLite is read from one :class:`Dialect`, never from ``connection.vendor`` elsewhere.
"""

from .admin import distinct_model_ids, estimated_count
from .core import (
    BEGIN_IMMEDIATE,
    DEFERRED_BEGINS,
    JOURNAL_MODE,
    JOURNAL_MODE_WAL,
    PLUS_ONE,
    POSTGRESQL,
    SQLITE,
    Dialect,
    RowUpdate,
    all_or_error,
    assignments,
    claim,
    claim_by_id,
    complete_idempotency_key,
    count_map_items,
    dialect,
    insert,
    insert_fields,
    json_insert,
    json_rows,
    q,
    row_reader,
    select_rows,
    single_statement_claims,
    table,
    update,
    update_open_stage,
    versioned_update,
)
from .outbox import (
    AUX,
    append_events,
    combined_writes,
    listen,
    lock_concurrency_key,
    lock_outbox_of_run,
    lock_stage_limit,
    notify,
    reserve_event_sequences,
    reserve_event_sequences_of_runs,
    with_aux,
)

__all__ = [
    "AUX",
    "BEGIN_IMMEDIATE",
    "DEFERRED_BEGINS",
    "JOURNAL_MODE",
    "JOURNAL_MODE_WAL",
    "PLUS_ONE",
    "POSTGRESQL",
    "SQLITE",
    "Dialect",
    "RowUpdate",
    "all_or_error",
    "append_events",
    "assignments",
    "claim",
    "claim_by_id",
    "combined_writes",
    "complete_idempotency_key",
    "count_map_items",
    "dialect",
    "distinct_model_ids",
    "estimated_count",
    "insert",
    "insert_fields",
    "json_insert",
    "json_rows",
    "listen",
    "lock_concurrency_key",
    "lock_outbox_of_run",
    "lock_stage_limit",
    "notify",
    "q",
    "reserve_event_sequences",
    "reserve_event_sequences_of_runs",
    "row_reader",
    "select_rows",
    "single_statement_claims",
    "table",
    "update",
    "update_open_stage",
    "versioned_update",
    "with_aux",
]
