"""Annotations: durable key/value facts about a run or a stage (decisions, approvals, triggers...).

``kernel.annotations.attach(run_id, {"decision.outcome": "approved"}, actor={"kind": "user", "id": "42"})``
writes every attribute (and, with ``emit_event``, an ``annotation:created`` event each) in one transaction.
A repeated ``idempotency_key`` for the same run and key is skipped silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.errors import RunNotFound, WorkflowEngineError
from ..core.jsonsafe import JSONValueError, check_json_value
from .events import ANNOTATION_CREATED, event
from .records import AnnotationRecord

if TYPE_CHECKING:
    from .deps import Deps

FILTERS = ("key", "key_prefix", "scope", "scope_id", "actor_id", "actor_kind", "attempt", "since", "until", "limit")


class Annotations:
    def __init__(self, deps: Deps):
        self._deps = deps

    def attach(
        self,
        run_id: str,
        attributes: Mapping[str, Any],
        *,
        actor: Mapping[str, Any] | None = None,
        scope: str = "run",
        scope_id: str | None = None,
        stage_pk: str | None = None,
        attempt: int = 0,
        payload: Any = None,
        idempotency_key: str | None = None,
        emit_event: bool = False,
    ) -> list[AnnotationRecord]:
        """Write one annotation per non-``None`` attribute; returns the rows written.

        Raises:
            RunNotFound: the run does not exist.
            WorkflowEngineError: a key is empty or a value/payload is not storable JSON.
        """
        actor = dict(actor or {})
        rows = []
        for key, value in attributes.items():
            if value is None:
                continue
            if not isinstance(key, str) or not key:
                raise WorkflowEngineError(f"Annotation keys must be non-empty strings, got {key!r}.")
            try:
                check_json_value(value, key)
                check_json_value(payload, "payload")
            except JSONValueError as exc:
                raise WorkflowEngineError(f"Annotation {key!r} cannot be stored: {exc}") from None
            rows.append(
                AnnotationRecord(
                    id=0,
                    run_id=run_id,
                    key=key,
                    value=value,
                    scope=scope,
                    scope_id=scope_id,
                    stage_pk=stage_pk,
                    attempt=attempt,
                    actor_kind=actor.get("kind"),
                    actor_id=actor.get("id"),
                    actor_version=actor.get("version"),
                    payload=payload,
                    idempotency_key=idempotency_key,
                )
            )
        if not rows:
            return []
        deps = self._deps
        now: datetime = deps.clock.now()
        with deps.persistence.atomic():
            if deps.persistence.get_run(run_id) is None:
                raise RunNotFound(run_id)
            written = deps.persistence.append_annotations(rows, now)
            if emit_event:
                deps.persistence.append_events(
                    [
                        event(
                            ANNOTATION_CREATED,
                            run_id,
                            now,
                            key=r.key,
                            value=r.value,
                            scope=r.scope,
                            scope_id=r.scope_id,
                        )
                        for r in rows
                    ],
                    idempotency_key or str(uuid.uuid4()),
                )
        return written

    def list(self, run_id: str, **filters: Any) -> list[AnnotationRecord]:
        """Annotations of a run, oldest first; filters: key, key_prefix, scope, scope_id, actor_id,
        actor_kind, attempt, since, until (inclusive), limit (default 1000)."""
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise WorkflowEngineError(f"Unknown annotation filter(s) {sorted(unknown)}; use {', '.join(FILTERS)}.")
        return self._deps.persistence.list_annotations(run_id, filters)
