"""Django signals sent by the engine.

``workflow_event`` is sent once per outbox event when the outbox is flushed (at least once: receivers
should be idempotent). ``sender`` is the event type string, ``event`` the event dict.
"""

from django.dispatch import Signal

workflow_event = Signal()
