"""Scripted AI responses for tests and offline runs: every AI helper call answered without a provider.

While a :class:`MockAI` is active, litellm's ``completion``, ``embedding`` and batch functions (``create_file``,
``create_batch``, ``retrieve_batch``, ``file_content``) are replaced by functions that answer from the rules
you add. Completions and embeddings still go through litellm with ``mock_response=<your reply>``, so the helper
gets real litellm responses (10 prompt and 20 completion tokens per call) and records priced ``AICall`` rows
exactly as in production. Batches are kept in memory (and, with ``batch_dir``, in files other processes' mocks
read); each request in a batch is answered by the same rules and its usage (10 + 20 tokens) is priced with the
model's batch prices.

::

    mock = MockAI()
    mock.object({"label": "bug"}, contains="crash")   # generate_object calls whose prompt mentions "crash"
    mock.text("A short summary.")                      # every other generate_text / stream_text call
    mock.embedding(lambda text: [float(len(text)), 1.0])
    with mock:
        ...                                            # run workflows; ctx.ai() calls are answered
    assert mock.calls[0].kind == "object"

The ``mock_ai`` pytest fixture is an active ``MockAI`` that is stopped when the test ends. This module imports
neither Django nor litellm until a mock is started.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

# The litellm functions a mock replaces while it is active.
PATCHED = ("completion", "embedding", "create_file", "create_batch", "retrieve_batch", "file_content")
KINDS = ("text", "object", "embedding")
BATCH_FINAL_STATUSES = ("completed", "failed", "expired", "cancelled")
# What litellm's mock_response reports for a completion; batch items report the same.
MOCK_USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
_active: list[MockAI] = []  # started mocks, innermost last


class MockAIError(AssertionError):
    """An AI call reached a :class:`MockAI` that has no rule for it (or a mock was misused).

    It subclasses ``AssertionError`` because it means the test did not script a call it made.
    """


@dataclass(frozen=True)
class MockCall:
    """One call a :class:`MockAI` answered (or refused).

    Attributes:
        kind: ``"text"`` (generate_text, stream_text), ``"object"`` (generate_object: the request had a
            ``response_format``) or ``"embedding"``.
        model: the litellm model string that was called (``"gpt-4o-mini"``).
        prompt: the prompt as text: the messages' contents joined by newlines (system messages included), or
            for an embedding the one text it is for.
        messages: the chat messages sent (empty for embeddings).
        options: the other keyword arguments litellm received (``temperature``, ``response_format``...).
        reply: what the mock answered: text, JSON text, a vector, or the exception raised.
        batch_id: the batch this request was part of, or ``None`` for a direct call.
    """

    kind: str
    model: str
    prompt: str
    messages: tuple[Mapping[str, Any], ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    reply: Any = None
    batch_id: str | None = None


Reply = Any  # a value, an exception instance, or a callable taking a MockCall and returning either


@dataclass
class _Rule:
    kind: str
    reply: Reply
    model: str | None
    contains: str | None
    times: int | None
    used: int = 0

    def matches(self, kind: str, model: str, prompt: str) -> bool:
        if self.kind != kind or (self.times is not None and self.used >= self.times):
            return False
        if self.model is not None and self.model != model and not model.endswith(f"/{self.model}"):
            return False
        return self.contains is None or self.contains.lower() in prompt.lower()


@dataclass
class _Batch:
    id: str
    input_file_id: str
    output_file_id: str
    polls: int = 0


@dataclass(frozen=True)
class _FileObject:
    id: str
    purpose: str = "batch"
    bytes: int = 0
    object: str = "file"


@dataclass(frozen=True)
class _BatchObject:
    id: str
    status: str
    input_file_id: str
    output_file_id: str | None
    error_file_id: str | None = None
    object: str = "batch"


@dataclass(frozen=True)
class _FileContent:
    content: bytes


def _new_id(kind: str) -> str:
    # Unique across processes: batch results are recorded once per batch id, and AICall rows outlive a mock.
    return f"{kind}-mock-{uuid.uuid4().hex[:20]}"


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # content parts: [{"type": "text", "text": "..."}]
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _as_json_text(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


class MockAI:
    """Scripted replies for every AI helper call while active (``with mock:`` or ``start()`` / ``stop()``).

    Rules are tried in the order they were added; the first that matches answers. Put specific rules (with
    ``model=`` or ``contains=``) before catch-all ones. A call no rule matches raises :class:`MockAIError`
    naming the call, so an unscripted call fails loudly instead of reaching a provider. A call that passes its
    own ``mock_response=`` keeps it (and is still recorded in :attr:`calls`).

    Args:
        batch_pending_polls: how many ``get_batch_results`` polls report a batch ``in_progress`` before it
            finishes (default 0: finished at the first poll).
        batch_status: how batches finish: ``"completed"`` (default), ``"failed"``, ``"expired"`` or
            ``"cancelled"``.
        batch_dir: also keep submitted batches (and their output files) in this directory, where a mock in
            another process with the same ``batch_dir`` finds them: a batch a worker submitted can be polled by
            ``runmaintenance`` or another worker, as with a provider. Default ``None``: in memory only.
    """

    def __init__(
        self, *, batch_pending_polls: int = 0, batch_status: str = "completed", batch_dir: str | Path | None = None
    ):
        self.batch_dir = Path(batch_dir) if batch_dir is not None else None
        self._rules: list[_Rule] = []
        self._calls: list[MockCall] = []
        self._originals: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, _Batch] = {}
        self.batches(pending_polls=batch_pending_polls, status=batch_status)

    # -- scripting ---------------------------------------------------------------------------------------------

    def text(
        self, reply: Reply, *, model: str | None = None, contains: str | None = None, times: int | None = None
    ) -> MockAI:
        """Answer ``generate_text`` / ``stream_text`` calls (and batch requests without a schema).

        Args:
            reply: the text; an exception instance to raise it (e.g. ``litellm.RateLimitError(...)``); or a
                callable ``reply(call: MockCall)`` returning either.
            model: only calls to this model (``"gpt-4o-mini"`` also matches ``"openai/gpt-4o-mini"``).
            contains: only calls whose prompt contains this text (case-insensitive).
            times: answer at most this many calls, then let later rules answer (default: unlimited).

        Returns:
            this mock, so rules chain: ``mock_ai.text("a", contains="x").text("b")``.
        """
        return self._add("text", reply, model, contains, times)

    def object(
        self, reply: Reply, *, model: str | None = None, contains: str | None = None, times: int | None = None
    ) -> MockAI:
        """Answer ``generate_object`` calls (and batch requests with a schema): any request with a
        ``response_format``.

        Args:
            reply: a dict, a pydantic model instance or a JSON string (invalid JSON tests the corrective retry
                and ``StructuredOutputError``); an exception instance; or a callable ``reply(call)``.
            model, contains, times: as for :meth:`text`.
        """
        return self._add("object", reply, model, contains, times)

    def embedding(
        self, reply: Reply, *, model: str | None = None, contains: str | None = None, times: int | None = None
    ) -> MockAI:
        """Answer ``embed`` calls, one text at a time.

        Args:
            reply: a vector (every text gets it); an exception instance; or a callable ``reply(call)`` returning
                the vector for ``call.prompt``, the text (so texts can get different vectors).
            model, contains, times: as for :meth:`text`; ``contains`` and ``times`` apply per text.
        """
        return self._add("embedding", reply, model, contains, times)

    def batches(self, *, pending_polls: int = 0, status: str = "completed") -> MockAI:
        """How batches submitted from now on behave: ``pending_polls`` polls ``in_progress``, then ``status``."""
        if status not in BATCH_FINAL_STATUSES:
            raise ValueError(f"batch status must be one of {', '.join(BATCH_FINAL_STATUSES)}, not {status!r}.")
        if not isinstance(pending_polls, int) or pending_polls < 0:
            raise ValueError(f"pending_polls must be a whole number >= 0, not {pending_polls!r}.")
        self.batch_pending_polls = pending_polls
        self.batch_status = status
        return self

    def reset(self) -> None:
        """Forget every rule and recorded call (batches already submitted are kept)."""
        with self._lock:
            self._rules.clear()
            self._calls.clear()

    def _add(self, kind: str, reply: Reply, model: str | None, contains: str | None, times: int | None) -> MockAI:
        if reply is None:
            raise ValueError(f"mock_ai.{kind}() needs a reply: a value, an exception instance or a callable.")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError(f"times must be a whole number >= 1 (or None for unlimited), not {times!r}.")
        with self._lock:
            self._rules.append(_Rule(kind, reply, model, contains, times))
        return self

    # -- inspecting --------------------------------------------------------------------------------------------

    @property
    def calls(self) -> list[MockCall]:
        """Every call answered so far, in order (a copy)."""
        with self._lock:
            return list(self._calls)

    def calls_of(self, kind: str | None = None, *, model: str | None = None) -> list[MockCall]:
        """The calls of one kind (``"text"``, ``"object"``, ``"embedding"``) and/or to one model."""
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}.")
        return [c for c in self.calls if (kind is None or c.kind == kind) and (model is None or c.model == model)]

    @property
    def active(self) -> bool:
        return self._originals is not None

    # -- activation --------------------------------------------------------------------------------------------

    def start(self) -> MockAI:
        """Replace litellm's entry points until :meth:`stop`. Imports litellm (once per process)."""
        if self._originals is not None:
            raise MockAIError("This MockAI is already active; stop() it before starting it again.")
        from ..ai.costs import load_litellm

        litellm = load_litellm()
        self._originals = {name: getattr(litellm, name) for name in PATCHED}
        replacements = {
            "completion": self._completion,
            "embedding": self._embedding,
            "create_file": self._create_file,
            "create_batch": self._create_batch,
            "retrieve_batch": self._retrieve_batch,
            "file_content": self._file_content,
        }
        for name, fn in replacements.items():
            setattr(litellm, name, fn)
        _active.append(self)
        return self

    def stop(self) -> None:
        """Put litellm's functions back (what was there when :meth:`start` ran, so mocks may nest)."""
        if self._originals is None:
            return
        from ..ai.costs import load_litellm

        litellm = load_litellm()
        for name, fn in self._originals.items():
            setattr(litellm, name, fn)
        self._originals = None
        if self in _active:
            _active.remove(self)

    def __enter__(self) -> MockAI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- answering ---------------------------------------------------------------------------------------------

    def _answer(
        self,
        kind: str,
        model: str,
        prompt: str,
        messages: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
        *,
        batch_id: str | None = None,
    ) -> Any:
        call = MockCall(kind, model, prompt, tuple(messages), dict(options), None, batch_id)
        with self._lock:
            rule = next((r for r in self._rules if r.matches(kind, model, prompt)), None)
            if rule is not None:
                rule.used += 1
        if rule is None:
            short = prompt if len(prompt) <= 120 else prompt[:117] + "..."
            raise MockAIError(
                f"mock_ai has no rule for this {kind} call to {model!r} with prompt {short!r}; "
                f"add one, e.g. mock_ai.{kind}(...)."
            )
        reply = rule.reply(call) if callable(rule.reply) and not isinstance(rule.reply, type) else rule.reply
        self._record(MockCall(kind, model, prompt, call.messages, call.options, reply, batch_id))
        if isinstance(reply, BaseException):
            raise reply
        if reply is None:
            raise MockAIError(f"the mock_ai.{kind}() reply callable returned None for {model!r}; return a value.")
        return reply

    def _record(self, call: MockCall) -> None:
        with self._lock:
            self._calls.append(call)

    @staticmethod
    def _kind_of(options: Mapping[str, Any]) -> str:
        return "object" if options.get("response_format") is not None else "text"

    def _completion(self, *, model: str, messages: Sequence[Mapping[str, Any]], **options: Any) -> Any:
        assert self._originals is not None
        kind = self._kind_of(options)
        if "mock_response" in options:  # the caller scripted this one itself
            prompt = "\n".join(_message_text(m) for m in messages)
            self._record(MockCall(kind, model, prompt, tuple(messages), dict(options), options["mock_response"]))
            return self._originals["completion"](model=model, messages=messages, **options)
        prompt = "\n".join(_message_text(m) for m in messages)
        reply = self._answer(kind, model, prompt, messages, options)
        text = _as_json_text(reply) if kind == "object" else str(reply)
        return self._originals["completion"](model=model, messages=messages, mock_response=text, **options)

    def _embedding(self, *, model: str, input: str | Sequence[str], **options: Any) -> Any:
        assert self._originals is not None
        texts = [input] if isinstance(input, str) else list(input)
        if "mock_response" in options:
            for text in texts:
                self._record(MockCall("embedding", model, text, (), dict(options), options["mock_response"]))
            return self._originals["embedding"](model=model, input=input, **options)
        vectors = [[float(x) for x in self._answer("embedding", model, text, (), options)] for text in texts]
        # litellm's mock returns one vector whatever the input; ask it for a response (usage, cost), then put
        # one vector per text in it.
        response = self._originals["embedding"](model=model, input=texts, mock_response=vectors[0], **options)
        response.data = [{"embedding": v, "index": i, "object": "embedding"} for i, v in enumerate(vectors)]
        return response

    # -- batches (in memory) -----------------------------------------------------------------------------------

    def _create_file(self, *, file: Any, purpose: str = "batch", **_: Any) -> _FileObject:
        content = file[1] if isinstance(file, tuple) else file
        if hasattr(content, "read"):
            content = content.read()
        data = bytes(content)
        with self._lock:
            file_id = _new_id("file")
            self._files[file_id] = data
        return _FileObject(id=file_id, purpose=purpose, bytes=len(data))

    def _create_batch(self, *, input_file_id: str, **_: Any) -> _BatchObject:
        with self._lock:
            lines = self._files.get(input_file_id)
            batch_id = _new_id("batch")
        if lines is None:
            raise MockAIError(f"mock_ai: no uploaded file {input_file_id!r} to create a batch from.")
        output = [self._batch_line(batch_id, json.loads(line)) for line in lines.decode().splitlines() if line.strip()]
        with self._lock:
            output_file_id = _new_id("file")
            self._files[output_file_id] = "\n".join(json.dumps(line) for line in output).encode()
            self._batches[batch_id] = _Batch(batch_id, input_file_id, output_file_id)
        if self.batch_dir is not None:
            # The output file first: a batch found in the directory always has its output there.
            self._share(output_file_id, self._files[output_file_id])
            self._share(f"{batch_id}.json", json.dumps([input_file_id, output_file_id]).encode())
        return _BatchObject(batch_id, "validating", input_file_id, None)

    def _share(self, name: str, data: bytes) -> None:
        assert self.batch_dir is not None
        self.batch_dir.mkdir(parents=True, exist_ok=True)
        partial = self.batch_dir / f".{name}.{uuid.uuid4().hex}"
        partial.write_bytes(data)
        os.replace(partial, self.batch_dir / name)  # readers never see a half-written file

    def _shared(self, name: str) -> bytes | None:
        if self.batch_dir is None or "/" in name or name.startswith("."):
            return None
        try:
            return (self.batch_dir / name).read_bytes()
        except FileNotFoundError:
            return None

    def _batch_line(self, batch_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
        body = dict(request.get("body") or {})
        model = str(body.pop("model", ""))
        messages = body.pop("messages", [])
        kind = self._kind_of(body)
        prompt = "\n".join(_message_text(m) for m in messages)
        custom_id = request.get("custom_id")
        try:
            reply = self._answer(kind, model, prompt, messages, body, batch_id=batch_id)
        except MockAIError:
            raise
        except Exception as exc:  # a scripted error becomes this request's error line, as a provider reports it
            return {"custom_id": custom_id, "response": None, "error": {"message": f"{type(exc).__name__}: {exc}"}}
        text = _as_json_text(reply) if kind == "object" else str(reply)
        return {
            "custom_id": custom_id,
            "response": {
                "status_code": 200,
                "body": {
                    "id": f"chatcmpl-{batch_id}-{custom_id}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": dict(MOCK_USAGE),
                },
            },
            "error": None,
        }

    def _retrieve_batch(self, batch_id: str, **_: Any) -> _BatchObject:
        shared = None if batch_id in self._batches else self._shared(f"{batch_id}.json")
        with self._lock:
            if shared is not None and batch_id not in self._batches:
                input_file_id, output_file_id = json.loads(shared)
                self._batches[batch_id] = _Batch(batch_id, input_file_id, output_file_id)
            batch = self._batches.get(batch_id)
            if batch is None:
                raise MockAIError(
                    f"mock_ai: no batch {batch_id!r} (batches live only as long as their MockAI; give the mocks of "
                    "several processes one batch_dir to share them)."
                )
            batch.polls += 1
            pending = batch.polls <= self.batch_pending_polls
        status = "in_progress" if pending else self.batch_status
        output = batch.output_file_id if status == "completed" else None
        return _BatchObject(batch.id, status, batch.input_file_id, output)

    def _file_content(self, file_id: str, **_: Any) -> _FileContent:
        with self._lock:
            data = self._files.get(file_id)
        if data is None:
            data = self._shared(file_id)
        if data is None:
            raise MockAIError(f"mock_ai: no file {file_id!r}.")
        return _FileContent(content=data)


def active_mock() -> MockAI | None:
    """The innermost started :class:`MockAI`, or ``None`` when AI calls go to real providers."""
    return _active[-1] if _active else None


__all__ = ["MockAI", "MockAIError", "MockCall", "active_mock"]
