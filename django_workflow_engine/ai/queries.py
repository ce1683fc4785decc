"""``AICall.objects``' cost queries; they live with the model (``models/ai_call_queries.py``), re-exported here."""

from ..models.ai_call_queries import AICallQuerySet

__all__ = ["AICallQuerySet"]
