"""The models' ``Status`` choices, built from the kernel's :class:`~django_workflow_engine.kernel.records.Status`
so the vocabulary is written once."""

from django.db import models

from ..kernel.records import ACTIVE_STATUSES, RERUNNABLE_STATUSES, TERMINAL_STATUSES
from ..kernel.records import Status as _Status

# django-stubs types only the class form of TextChoices; the functional form is what keeps one member list.
Status = models.TextChoices("Status", [(s.name, (s.value, s.value.capitalize())) for s in _Status])  # type: ignore[call-overload]
Status.__doc__ = "One status vocabulary for runs, stages and jobs."
Status.__module__ = __name__

# Ordered as the kernel's enum, for ``status__in`` filters and membership tests.
TERMINAL = tuple(Status(s) for s in _Status if s in TERMINAL_STATUSES)
ACTIVE = tuple(Status(s) for s in _Status if s in ACTIVE_STATUSES)
RERUNNABLE = tuple(Status(s) for s in _Status if s in RERUNNABLE_STATUSES)
