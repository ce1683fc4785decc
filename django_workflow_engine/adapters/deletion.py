"""What deleting a run deletes besides the rows that cascade from it.

Stages, jobs, logs, artifacts and annotations have foreign keys to the run and cascade. These do not, so
receivers of Django's deletion signals remove them, for ``run.delete()``, ``WorkflowRun.objects...delete()``
and any cascade that reaches a run alike:

- the run's outbox events and idempotency keys (same transaction as the delete);
- the replay data of its AI calls (the calls themselves, the cost history, are kept with ``run = NULL``);
- its blob files, everything under ``runs/<workflow>/<run id>/`` in the blob storage (stage outputs, artifacts,
  ``ctx.storage.stage_key()`` files), after the transaction commits, so a rolled-back delete keeps them.
  Blobs a stage saved under keys of its own choosing are the project's to manage.

:func:`delete_runs` deletes many runs in one transaction with the same effects, doing the per-run work above
as one statement per table for the whole batch (the retention purge uses it).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, pre_delete

logger = logging.getLogger("django_workflow_engine.deletion")

# Set by delete_runs: the receivers only note each deleted run, and delete_runs does their work in bulk.
_batch: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar("dwe_delete_batch", default=None)


def run_blob_prefix(workflow_type: str, run_id: str) -> str:
    return f"runs/{workflow_type}/{run_id}/"


def _before_run_delete(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    from ..models import AICall

    if _batch.get() is not None:
        return
    # Before the delete: afterwards the calls' run is NULL and they can no longer be told apart.
    AICall.objects.using(using).filter(run_id=instance.pk, replay__isnull=False).update(replay=None)


def _after_run_delete(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    from ..models import IdempotencyKey, OutboxEvent

    noted = _batch.get()
    if noted is not None:
        noted.append((instance.pk, instance.workflow_type))
        return
    OutboxEvent.objects.using(using).filter(run_id=instance.pk).delete()
    IdempotencyKey.objects.using(using).filter(run_id=instance.pk).delete()
    prefix = run_blob_prefix(instance.workflow_type, instance.pk)
    transaction.on_commit(lambda: delete_blobs(prefix), using=using, robust=True)


def delete_runs(run_ids: Sequence[str], using: str = "default") -> dict[str, int]:
    """Delete the runs ``run_ids`` and everything that belongs to them, like ``run.delete()`` for each.

    Must be called inside a transaction (``transaction.atomic(using=using)``); the blob folders are deleted
    once it commits. Statements do not grow with the number of runs beyond Django's cascade batches: the
    outbox events, idempotency keys and AI-call replay data of all the runs go in one statement each.
    Returns deleted row counts by model label (``"django_workflow_engine.WorkflowRun"``...), plus
    ``"django_workflow_engine.OutboxEvent"`` and ``"django_workflow_engine.IdempotencyKey"``.
    """
    from ..models import AICall, IdempotencyKey, OutboxEvent, WorkflowRun

    if not transaction.get_connection(using).in_atomic_block:
        raise RuntimeError("delete_runs() must be called inside transaction.atomic()")
    ids = list(run_ids)
    if not ids:
        return {}
    # One new version of each call row instead of three (replay, then stage and run set NULL by the cascade,
    # which then finds nothing left to update).
    AICall.objects.using(using).filter(run_id__in=ids).update(run=None, stage=None, replay=None)
    noted: list[tuple[str, str]] = []
    token = _batch.set(noted)
    try:
        # Only what the receivers read: a run's input and output can be large.
        _, counts = WorkflowRun.objects.using(using).filter(pk__in=ids).only("id", "workflow_type").delete()
    finally:
        _batch.reset(token)
    deleted = [pk for pk, _ in noted]
    counts = dict(counts)
    if deleted:
        label = OutboxEvent._meta.label
        counts[label] = OutboxEvent.objects.using(using).filter(run_id__in=deleted).delete()[0]
        label = IdempotencyKey._meta.label
        counts[label] = IdempotencyKey.objects.using(using).filter(run_id__in=deleted).delete()[0]
        prefixes = [run_blob_prefix(workflow_type, pk) for pk, workflow_type in noted]
        transaction.on_commit(lambda: _delete_many_blobs(prefixes), using=using, robust=True)
    return counts


def _delete_many_blobs(prefixes: list[str]) -> None:
    for prefix in prefixes:
        try:
            delete_blobs(prefix)
        except Exception:  # one unreadable folder must not keep the others
            logger.exception("could not delete the blobs under %s", prefix)


def delete_blobs(prefix: str) -> int:
    """Delete every blob under ``prefix`` in the engine's blob storage (and, on a local file system, the
    folders left empty). Returns how many files were deleted."""
    from ..conf import settings
    from .blobs import StorageBlobStore

    store = StorageBlobStore(settings.BLOB_STORAGE, prefix=settings.BLOB_PREFIX)
    keys = store.list(prefix)
    for key in keys:
        store.delete(key)
    _remove_empty_folders(store, prefix)
    if keys:
        logger.info("deleted %d blob(s) under %s", len(keys), prefix)
    return len(keys)


def _remove_empty_folders(store: Any, prefix: str) -> None:
    storage = store.storage
    try:
        root = storage.path(store._name(prefix.rstrip("/")))
    except (NotImplementedError, AttributeError):
        return  # not a local file system: object stores have no folders to leave behind
    if not os.path.isdir(root):
        return
    for folder, _, _ in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):  # not empty: something else lives there
            os.rmdir(folder)


def connect() -> None:
    """Connect the receivers (called from ``AppConfig.ready``)."""
    from ..models import WorkflowRun

    pre_delete.connect(_before_run_delete, sender=WorkflowRun, dispatch_uid="django_workflow_engine.run_pre_delete")
    post_delete.connect(_after_run_delete, sender=WorkflowRun, dispatch_uid="django_workflow_engine.run_post_delete")
