"""ORM persistence of idempotency keys (a part of :class:`~.persistence.OrmPersistence`)."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction

from ..core.errors import WorkflowEngineError
from ..kernel.records import (
    IN_PROGRESS,
    IdempotencyClaim,
)
from ..models import (
    IdempotencyKey,
)
from . import deferred
from .rows import result_run_id
from .sqlite import guard_public_methods
from .statements import complete_idempotency_key
from .store import OrmStore, expect_rows


@guard_public_methods
class OrmIdempotency(OrmStore):
    """Idempotency keys of commands."""

    # -- idempotency ----------------------------------------------------------------------------------------
    def acquire_idempotency_key(
        self, key: str, command_type: str, now: datetime, stale_after_seconds: float | None
    ) -> IdempotencyClaim:
        keys = self._objects(IdempotencyKey)
        # Two rounds: the row we collided with may be released before we read it.
        for _ in range(2):
            # Outside a transaction the INSERT commits on its own (one statement); inside one, a savepoint keeps
            # the caller's transaction usable after a duplicate key.
            guard = transaction.atomic(using=self.using) if connections[self.using].in_atomic_block else None
            try:
                with guard or contextlib.nullcontext():
                    keys.create(key=key, command_type=command_type, result=dict(IN_PROGRESS), created_at=now)
                return IdempotencyClaim("acquired")
            except IntegrityError:
                pass
            with transaction.atomic(using=self.using):
                # Locked (PostgreSQL) so a completion or a competing reclaim cannot slip between read and write.
                row = keys.select_for_update().filter(key=key, command_type=command_type).first()
                if row is None:
                    continue
                if row.result != IN_PROGRESS:
                    return IdempotencyClaim("replay", row.result)
                stale = stale_after_seconds is not None and now - row.created_at >= timedelta(
                    seconds=stale_after_seconds
                )
                # Conditional on the marker we read: of two racers only one moves created_at.
                if stale and keys.filter(pk=row.pk, created_at=row.created_at).update(created_at=now):
                    return IdempotencyClaim("acquired")
                return IdempotencyClaim("in_progress")
        return IdempotencyClaim("in_progress")

    def complete_idempotency_key(self, key: str, command_type: str, result: Any) -> None:
        if deferred.deferring(self.using):
            # In the command's own transaction (see Kernel._with_idempotency): leaves with its writes.
            sql, params = complete_idempotency_key(self.using, key, command_type, result)
            missing = WorkflowEngineError(f"Idempotency key {key!r} ({command_type}) vanished before completion.")
            deferred.defer(self.using, deferred.Write(sql, params, check=expect_rows(1, missing)))
            return
        self._objects(IdempotencyKey).filter(key=key, command_type=command_type).update(
            result=result, run_id=result_run_id(result)
        )

    def release_idempotency_key(self, key: str, command_type: str) -> None:
        self._objects(IdempotencyKey).filter(key=key, command_type=command_type).delete()

    def discard_idempotency_key(self, key: str, command_type: str, run_id: str) -> bool:
        keys = self._objects(IdempotencyKey).filter(key=key, command_type=command_type)
        with transaction.atomic(using=self.using):
            row = keys.select_for_update().first()
            if row is None or not isinstance(row.result, dict) or row.result.get("run_id") != run_id:
                return False
            row.delete()
            return True

    def expire_idempotency_keys(self, cutoff: datetime, limit: int) -> int:
        keys = self._objects(IdempotencyKey)
        ids = list(keys.filter(created_at__lt=cutoff).order_by("created_at").values_list("pk", flat=True)[:limit])
        return keys.filter(pk__in=ids).delete()[0] if ids else 0
