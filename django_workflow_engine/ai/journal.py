"""The AI call journal: memoization of a stage's AI calls across its re-executions.

A stage is re-executed when its worker dies (the job is claimed again once its lease expires) or when it raised
and is retried. Everything it did before is done again, AI calls included; without a journal each would be
paid for and recorded a second time. With it, every AI call made inside a stage's ``execute`` gets a **logical
key**, stored in ``AICall.call_key`` together with what is needed to give its result back (``AICall.replay``):

    <scope>:<ordinal>:<request hash>

- *scope*: ``execute``, or ``resume.<digest>`` when an async-batch stage is executed again with a resume state;
- *ordinal*: 1 for the first AI call of this execution, 2 for the second, ... (every provider call counts, each
  step of a tool loop and each tool execution too);
- *request hash*: SHA-256 of the call type, model, topic, messages and options (secrets, retries and timeouts
  left out), so a changed prompt is a different call and is never served a stale answer.

When the same stage row is executed again (any attempt) and makes the same call at the same position, the
recorded result is returned, the provider is not called and no second row is written. A unique constraint on
``(stage, call_key)`` lets only one of two concurrent executions (a worker presumed dead that was only slow, and
its replacement) record a logical call; the other returns the recorded result. Failed calls get no key: they are
made again. ``rerun_from`` creates new stage rows, so a rerun calls the provider again.

The replay data holds the response, so it is dropped once it can no longer be used: when the run finishes, and
as soon as the stage completes when ``AI_LOG_PROMPTS`` is not ``True`` (see :func:`on_workflow_event`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

logger = logging.getLogger("django_workflow_engine.ai")

# Options that change how a call is made, not what is asked: a retried or re-keyed call is the same call.
UNHASHED_OPTIONS = frozenset(
    {"api_key", "timeout", "num_retries", "max_retries", "extra_headers", "metadata", "_skip_mcp_handler"}
)
TERMINAL_RUN_EVENTS = frozenset({"workflow:completed", "workflow:failed", "workflow:cancelled"})


class AlreadyRecorded(Exception):
    """Raised by ``record_call`` when another execution of the stage recorded this logical call first."""

    def __init__(self, row: Any):
        super().__init__(f"AI call {row.call_key!r} of stage {row.stage_id} is already recorded")
        self.row = row


class CallJournal:
    """The logical keys of one stage execution's AI calls, shared by every helper ``ctx.ai()`` returns."""

    def __init__(self, stage_pk: str, scope: str = "execute"):
        self.stage_pk = stage_pk
        self.scope = scope
        self._ordinal = 0
        self._lock = threading.Lock()  # a stage may make calls from several threads

    def next_key(self, call_type: str, model_key: str, model_id: str, topic: str, request: Mapping[str, Any]) -> str:
        """The key of the next call: consumes one ordinal."""
        with self._lock:
            self._ordinal += 1
            ordinal = self._ordinal
        digest = request_hash(
            {"type": call_type, "model": model_key, "model_id": model_id, "topic": topic, **dict(request)}
        )
        return f"{self.scope}:{ordinal}:{digest}"

    def recorded(self, key: str) -> Any:
        """The ``AICall`` row recorded under ``key`` for this stage, or ``None``."""
        from ..models import AICall

        return AICall.objects.filter(stage_id=self.stage_pk, call_key=key).first()


def scope_for(resume_state: Any) -> str:
    """``execute`` for a first execution, ``resume.<digest>`` for an async-batch stage executed again with a
    resume state (a different logical execution: its calls are not the first execution's calls)."""
    if resume_state is None:
        return "execute"
    return "resume." + request_hash({"resume_state": resume_state})[:16]


def request_hash(request: Mapping[str, Any]) -> str:
    """SHA-256 of a request in canonical JSON; options in :data:`UNHASHED_OPTIONS` are left out."""
    data = dict(request)
    if isinstance(data.get("options"), Mapping):
        data["options"] = {k: v for k, v in data["options"].items() if k not in UNHASHED_OPTIONS}
    text = json.dumps(data, sort_keys=True, default=_canonical, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical(value: Any) -> Any:
    # Stable across processes: never a repr with a memory address in it.
    if isinstance(value, type) and issubclass(value, BaseModel):
        return {"schema": value.model_json_schema()}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "model_dump"):
        return value.model_dump(exclude_none=True)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if callable(value):
        return f"<callable {getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}>"
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


# -- replay data: what is stored to give a result back ------------------------------------------------------


def completion_payload(response: Any) -> dict[str, Any]:
    """What a chat completion is replayed from: the first choice's message, finish reason and usage."""
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    return {
        "id": getattr(response, "id", None),
        "model": getattr(response, "model", None),
        "choices": [
            {"index": 0, "finish_reason": choice.finish_reason, "message": choice.message.model_dump(exclude_none=True)}
        ],
        "usage": {
            "prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
            "completion_tokens": getattr(usage, "completion_tokens", 0) or 0,
            "total_tokens": getattr(usage, "total_tokens", 0) or 0,
        },
    }


def completion_from(payload: Mapping[str, Any]) -> Any:
    """A litellm ``ModelResponse`` rebuilt from :func:`completion_payload`."""
    from .costs import load_litellm

    load_litellm()
    from litellm.types.utils import ModelResponse

    return ModelResponse(**{k: v for k, v in payload.items() if v is not None})


# -- clearing the replay data --------------------------------------------------------------------------------


def clear_replay(run_id: str, *, stage_id: str | None = None) -> int:
    """Drop the replay data of a finished run's calls (or of one COMPLETED stage's calls); returns rows changed.

    Only rows that can never be replayed again are touched: those of a run that is still finished (a late event
    must not clear the calls of a rerun in progress), or of a stage row that is COMPLETED.
    """
    from ..models import AICall, Status
    from ..models.status import TERMINAL

    rows = AICall.objects.filter(run_id=run_id, replay__isnull=False)
    if stage_id is None:
        rows = rows.filter(run__status__in=TERMINAL)
    else:
        rows = rows.filter(stage__stage_id=stage_id, stage__status=Status.COMPLETED)
    return rows.update(replay=None)


def on_workflow_event(sender: str, event: Mapping[str, Any], **kwargs: Any) -> None:
    """``workflow_event`` receiver: clear replay data when the run finishes, and when a stage completes if
    ``AI_LOG_PROMPTS`` is not ``True`` (so responses are kept no longer than needed)."""
    run_id = event.get("workflow_run_id")
    if not run_id:
        return
    if sender in TERMINAL_RUN_EVENTS:
        clear_replay(str(run_id))
    elif sender == "stage:completed" and event.get("stage_id"):
        from ..conf import settings

        if settings.AI_LOG_PROMPTS is not True:
            clear_replay(str(run_id), stage_id=str(event["stage_id"]))
