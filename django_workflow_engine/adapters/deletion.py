"""What deleting a run deletes besides the rows that cascade from it.

Stages, jobs, logs, artifacts and annotations have foreign keys to the run and cascade. These do not, so
receivers of Django's deletion signals remove them, for ``run.delete()``, ``WorkflowRun.objects...delete()``
and any cascade that reaches a run alike:

- the run's outbox events and idempotency keys (same transaction as the delete);
- the replay data of its AI calls (the calls themselves, the cost history, are kept with ``run = NULL``);
- its blob files, everything under ``runs/<workflow>/<run id>/`` in the blob storage (stage outputs, artifacts,
  ``ctx.storage.stage_key()`` files), after the transaction commits, so a rolled-back delete keeps them.
  Blobs a stage saved under keys of its own choosing are the project's to manage.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, pre_delete

logger = logging.getLogger("django_workflow_engine.deletion")


def run_blob_prefix(workflow_type: str, run_id: str) -> str:
    return f"runs/{workflow_type}/{run_id}/"


def _before_run_delete(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    from ..models import AICall

    # Before the delete: afterwards the calls' run is NULL and they can no longer be told apart.
    AICall.objects.using(using).filter(run_id=instance.pk, replay__isnull=False).update(replay=None)


def _after_run_delete(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    from ..models import IdempotencyKey, OutboxEvent

    OutboxEvent.objects.using(using).filter(run_id=instance.pk).delete()
    IdempotencyKey.objects.using(using).filter(run_id=instance.pk).delete()
    prefix = run_blob_prefix(instance.workflow_type, instance.pk)
    transaction.on_commit(lambda: delete_blobs(prefix), using=using, robust=True)


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
