"""The messages sent to a model, and what an ``AICall`` row keeps of them (``AI_LOG_PROMPTS``)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

Prompt = str | Sequence[Mapping[str, Any]]


def messages_for(prompt: Prompt, system: str | None) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def logged_prompt(prompt: Prompt, system: str | None) -> str:
    if isinstance(prompt, str) and not system:
        return prompt
    return json.dumps(messages_for(prompt, system), default=str, ensure_ascii=False)


def error_text(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def strip_fences(text: str) -> str:
    match = _FENCE.match(text or "")
    return match.group(1) if match else (text or "")


def apply_prompt_policy(text: str | None) -> str | None:
    """What an ``AICall`` row keeps of a prompt or response under ``WORKFLOW_ENGINE["AI_LOG_PROMPTS"]``."""
    from ..conf import settings

    policy = settings.AI_LOG_PROMPTS
    if text is None or policy is True:
        return text
    if policy == "redact":
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return f"[redacted: {len(text)} chars, sha256 {digest}]"
    return None
