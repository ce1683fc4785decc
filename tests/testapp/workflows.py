"""Autodiscovered by the registry, like a user's ``workflows.py``."""

from tests.flows import diamond, triple, triple_ai

__all__ = ["diamond", "triple", "triple_ai"]
from tests.flows_ai_traffic import ai_burst  # noqa: F401
from tests.flows_children import onboard_all, onboarding  # noqa: F401
from tests.flows_limits import gpu_pair, per_customer, slow_walk, whole_two  # noqa: F401
from tests.flows_map import (  # noqa: F401
    squares,
    squares_by_field,
    squares_slowly,
    squares_tolerant,
    squares_two_at_a_time,
)
from tests.flows_signals import signal_batch, signal_batch_slow, signal_resume  # noqa: F401
from tests.flows_timeouts import async_sleepy, sleepy  # noqa: F401
