"""Streaming text: :class:`TextStream`, recorded once when the stream ends."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from decimal import Decimal
from typing import Any

from .costs import ModelSpec, load_litellm, response_cost
from .ledger import CallLedger
from .prompts import error_text
from .recording import elapsed_ms
from .results import ZERO, Usage, usage_of
from .traffic import send


class TextStream:
    """An iterator of text chunks from :meth:`AIHelper.stream_text`; also a context manager.

    After the stream ends: ``text`` (everything), ``usage``, ``cost``, ``finish_reason``.
    """

    def __init__(
        self,
        helper: CallLedger,
        spec: ModelSpec,
        messages: list[dict[str, Any]],
        options: Any,
        prompt: str,
        call_key: str | None = None,
    ):
        self.text = ""
        self.usage: Usage | None = None
        self.cost: Decimal | None = None
        self.finish_reason: str | None = None
        self._gen = self._run(helper, spec, messages, dict(options), prompt, call_key)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    def close(self) -> None:
        """Stop early; what was received so far is recorded."""
        self._gen.close()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(
        self,
        helper: CallLedger,
        spec: ModelSpec,
        messages: list[dict[str, Any]],
        options: dict[str, Any],
        prompt: str,
        call_key: str | None,
    ) -> Generator[str, None, None]:
        row, call_key = helper._lookup(call_key)
        if row is not None:  # recorded by an earlier execution of this stage: given back as one chunk
            self.usage, self.cost = helper._replayed(row)
            self.text, self.finish_reason = row.replay["text"], row.replay.get("finish_reason")
            if self.text:
                yield self.text
            return
        helper._check_budget()
        litellm = load_litellm()
        options.setdefault("stream_options", {"include_usage": True})
        chunks: list[Any] = []
        parts: list[str] = []
        # Rate limits apply when the request is sent, as for any call (see traffic.py).
        sent = send(
            helper,
            [spec],
            {"messages": messages, "options": options},
            lambda s: litellm.completion(model=s.model_id, messages=messages, stream=True, **{**s.params, **options}),
            lambda s, exc, started, extra: helper._record_failure(s, "stream", prompt, exc, started, extra),
            in_stage=helper._journal is not None,
        )
        stream, started = sent.response, sent.started
        meta: dict[str, Any] = {"completed": False, **sent.metadata}
        error: BaseException | None = None
        try:
            for chunk in stream:
                chunks.append(chunk)
                if chunk.choices:
                    choice = chunk.choices[0]
                    if choice.finish_reason:
                        self.finish_reason = choice.finish_reason
                    piece = getattr(choice.delta, "content", None)
                    if piece:
                        parts.append(piece)
                        yield piece
            meta["completed"] = True
        except GeneratorExit:
            raise
        except Exception as exc:
            error = exc
            raise
        finally:
            self.text = "".join(parts)
            usage, cost = self._usage(litellm, spec, chunks, messages)
            self.usage, self.cost = usage, cost
            sent.correct_tokens(usage.total_tokens)
            meta.update(stream_chunks=len(chunks), finish_reason=self.finish_reason)
            whole = meta["completed"] and error is None  # only a whole answer is memoized
            record = helper._entry(
                spec,
                "stream",
                prompt=prompt,
                response=self.text,
                usage=usage,
                cost=cost,
                latency_ms=elapsed_ms(started),
                error=error_text(error) if error is not None else None,
                metadata=meta,
                call_key=call_key if whole else None,
                replay={"text": self.text, "finish_reason": self.finish_reason} if whole and call_key else None,
                sent_at=sent.sent_at,
            )
            helper._record(record, check_budget=meta["completed"])

    @staticmethod
    def _usage(litellm: Any, spec: ModelSpec, chunks: list[Any], messages: list[Any]) -> tuple[Usage, Decimal | None]:
        if not chunks:
            return Usage(), ZERO
        try:
            built = litellm.stream_chunk_builder(chunks, messages=messages)
        except Exception:
            return Usage(), None
        usage = usage_of(built)
        return usage, response_cost(spec, built, usage)
