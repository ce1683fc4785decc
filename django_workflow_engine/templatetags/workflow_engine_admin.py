"""Template tags of the engine's admin pages."""

from __future__ import annotations

from django import template
from django.db.models import Exists, Q

register = template.Library()


@register.simple_tag
def runs_waiting_for_input() -> int:
    """How many runs wait for a signal (a person's answer or an outside event): one count query."""
    from ..admin.waiting import signal_waits
    from ..models import WorkflowRun
    from ..models.status import Status

    return WorkflowRun.objects.filter(Q(status=Status.RUNNING) & Exists(signal_waits())).count()
