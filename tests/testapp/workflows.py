"""Autodiscovered by the registry, like a user's ``workflows.py``."""

from tests.flows import diamond, triple, triple_ai

__all__ = ["diamond", "triple", "triple_ai"]
from tests.flows_limits import per_customer, slow_walk, whole_two  # noqa: F401
