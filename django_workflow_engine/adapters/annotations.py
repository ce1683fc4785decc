"""ORM persistence of what runs and stages write about themselves: logs and annotations (a part of
:class:`~.persistence.OrmPersistence`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, transaction

from ..kernel.records import (
    AnnotationRecord,
    LogRecord,
)
from ..models import (
    WorkflowAnnotation,
    WorkflowLog,
)
from .rows import annotation_record
from .sqlite import busy_guard, guard_public_methods
from .store import OrmStore


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(fn: Any, using: str) -> None:
    import threading

    errors: list[BaseException] = []

    def target() -> None:
        try:
            with busy_guard(using):
                fn()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections[using].close()

    thread = threading.Thread(target=target, name="dwe-async-log")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@guard_public_methods
class OrmAnnotations(OrmStore):
    """Logs and annotations."""

    # -- logs -----------------------------------------------------------------------------------------------
    def create_log(
        self,
        run_id: str | None,
        stage_pk: str | None,
        level: str,
        message: str,
        metadata: Mapping[str, Any] | None,
        now: datetime,
    ) -> None:
        def write() -> None:
            self._objects(WorkflowLog).create(
                created_at=now,
                run_id=run_id,
                stage_id=stage_pk,
                level=level,
                message=message,
                metadata=dict(metadata) if metadata else None,
            )

        if _in_event_loop():
            # ``ctx.log`` called from an ``async def`` stage: Django refuses sync queries on a thread that runs
            # an event loop, so write from a short-lived thread with its own connection.
            _run_in_thread(write, self.using)
        else:
            write()

    def get_logs(self, run_id: str) -> list[LogRecord]:
        return [
            LogRecord(r.id, r.run_id, r.stage_id, r.level, r.message, r.metadata, r.created_at)
            for r in self._objects(WorkflowLog).filter(run_id=run_id).order_by("id")
        ]

    # -- annotations ----------------------------------------------------------------------------------------
    def append_annotations(self, annotations: Sequence[AnnotationRecord], now: datetime) -> list[AnnotationRecord]:
        rows = self._objects(WorkflowAnnotation)
        written = []
        for a in annotations:
            if (
                a.idempotency_key is not None
                and rows.filter(run_id=a.run_id, key=a.key, idempotency_key=a.idempotency_key).exists()
            ):
                continue
            try:
                # A savepoint: a concurrent writer of the same idempotency key makes this insert fail alone.
                with transaction.atomic(using=self.using):
                    row = rows.create(
                        created_at=now,
                        run_id=a.run_id,
                        stage_id=a.stage_pk,
                        attempt=a.attempt,
                        scope=a.scope,
                        scope_id=a.scope_id,
                        actor_kind=a.actor_kind,
                        actor_id=a.actor_id,
                        actor_version=a.actor_version,
                        key=a.key,
                        value=copy.deepcopy(a.value),
                        payload=copy.deepcopy(a.payload),
                        idempotency_key=a.idempotency_key,
                    )
            except IntegrityError:
                if a.idempotency_key is None:
                    raise
                continue
            written.append(copy.deepcopy(annotation_record(row)))
        return written

    def list_annotations(self, run_id: str, filters: Mapping[str, Any]) -> list[AnnotationRecord]:
        qs = self._objects(WorkflowAnnotation).filter(run_id=run_id)
        if filters.get("key") is not None:
            qs = qs.filter(key=filters["key"])
        elif filters.get("key_prefix") is not None:
            qs = qs.filter(key__startswith=filters["key_prefix"])
        for name in ("scope", "scope_id", "actor_id", "actor_kind", "attempt"):
            if filters.get(name) is not None:
                qs = qs.filter(**{name: filters[name]})
        if filters.get("since") is not None:
            qs = qs.filter(created_at__gte=filters["since"])
        if filters.get("until") is not None:
            qs = qs.filter(created_at__lte=filters["until"])
        return [annotation_record(r) for r in qs.order_by("created_at", "id")[: filters.get("limit") or 1000]]
