"""Autodiscovered by the registry, like a user's ``workflows.py``."""

from tests.flows import diamond, triple

__all__ = ["diamond", "triple"]
