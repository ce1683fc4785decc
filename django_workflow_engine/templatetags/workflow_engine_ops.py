"""``{% workflow_engine_health as health %}``: live workers and the queue, for the admin's app index."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag
def workflow_engine_health() -> dict[str, Any]:
    from ..ops.workers import live_workers, queue_state

    return {"workers": len(live_workers()), "queue": queue_state()}
