"""ORM implementation of the kernel's :class:`~django_workflow_engine.kernel.ports.Persistence` port.

It behaves like :class:`~django_workflow_engine.kernel.memory.InMemoryPersistence` (the conformance suite in
``tests/conformance`` runs against both) on SQLite and PostgreSQL. Every timestamp comes from the ``now``
argument, never from the database or ``timezone.now()``, so a fake clock drives every time-based query.
"""

from __future__ import annotations

from .annotations import OrmAnnotations
from .concurrency import OrmConcurrency
from .idempotency import OrmIdempotency
from .maps import OrmMaps
from .outbox import OrmOutbox
from .runs import OrmRuns
from .signals import OrmSignals
from .sqlite import guard_public_methods
from .stages import OrmStages


@guard_public_methods
class OrmPersistence(
    OrmRuns, OrmStages, OrmMaps, OrmOutbox, OrmIdempotency, OrmAnnotations, OrmConcurrency, OrmSignals
):
    """Persistence over the Django ORM (SQLite or PostgreSQL). On SQLite its transactions take the write lock
    up front and a busy database is waited out (:mod:`.sqlite`).

    Args:
        using: the database alias every query goes to.
    """
