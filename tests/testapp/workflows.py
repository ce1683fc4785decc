"""Autodiscovered by the registry, like a user's ``workflows.py``."""

from tests.flows import diamond

__all__ = ["diamond"]
