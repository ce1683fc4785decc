"""What every AI call goes through on its way to the ledger: the journal (a re-executed stage gets its
recorded calls back), the run's budget, and the ``AICall`` row (:class:`CallLedger`, the base of ``AIHelper``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..core.context import STOPPED_RUN_STATUSES, AIUsage
from ..core.errors import BudgetExceeded, RunNotRunning
from .costs import ModelSpec, default_budget
from .journal import AlreadyRecorded, CallJournal, logger
from .prompts import error_text
from .recording import CallRecord, elapsed_ms, fmt, run_sync, write_call
from .results import ZERO, Usage, row_usage


class CallLedger:
    """A topic, optionally linked to a run and stage, that AI calls are recorded, journaled and budgeted under."""

    def __init__(
        self,
        topic: str,
        *,
        run_id: str | None = None,
        stage_pk: str | None = None,
        usage_sink: AIUsage | None = None,
        journal: CallJournal | None = None,
        workflow_id: str | None = None,
        stage_key: str | None = None,
    ):
        self.topic = topic
        self.run_id = run_id
        self.stage_pk = stage_pk
        # The run's workflow id and the stage's definition id, stored on every call (read from the run and
        # stage rows when recording if not known here).
        self.workflow_id = workflow_id
        self.stage_key = stage_key
        self._usage_sink = usage_sink
        self._journal = journal  # set inside a stage's execute: its calls are memoized (see journal.py)

    def spent(self) -> Decimal:
        """The run's ``total_cost`` now (zero without a run)."""
        if not self.run_id:
            return ZERO
        from ..models import WorkflowRun

        value = run_sync(
            lambda: WorkflowRun.objects.filter(pk=self.run_id).values_list("total_cost", flat=True).first()
        )
        return value or ZERO

    def _key(self, call_type: str, spec: ModelSpec, request: dict[str, Any], topic: str | None = None) -> str | None:
        """The logical key of the next call, inside a stage's execute; ``None`` elsewhere (not memoized)."""
        if self._journal is None:
            return None
        return self._journal.next_key(call_type, spec.key, spec.model_id, topic or self.topic, request)

    def _lookup(self, key: str | None) -> tuple[Any, str | None]:
        """``(recorded row, key)``: the row to replay, or ``(None, key)`` to call the provider and record under
        ``key``. A row whose replay data was already dropped cannot be replayed: the call is made again and
        recorded without a key."""
        if key is None or self._journal is None:
            return None, key
        journal = self._journal
        row = run_sync(lambda: journal.recorded(key))
        if row is None:
            return None, key
        if row.replay is None:
            return None, None
        return row, key

    def _replayed(self, row: Any) -> tuple[Usage, Decimal | None]:
        """A recorded call given back: nothing is sent or written. A call that passed the budget when it was made
        passes it again now."""
        usage = row_usage(row)
        if row.cost or usage.total_tokens:
            self._check_budget(after=True)
        return usage, row.cost

    def _budget(self) -> tuple[Decimal | None, Decimal, str | None]:
        from ..models import WorkflowRun

        row = (
            WorkflowRun.objects.filter(pk=self.run_id).values("max_cost", "total_cost", "workflow_id", "status").first()
        )
        if row is None:
            return None, ZERO, None
        budget = row["max_cost"] if row["max_cost"] is not None else default_budget(row["workflow_id"])
        return budget, row["total_cost"] or ZERO, row["status"]

    def _check_budget(self, *, after: bool = False) -> None:
        """Before a call: refuse, inside a stage, if the run is finished (cancelled, failed by its deadline: the
        stage's result would be discarded) or has spent its budget. After one: raise if this call passed it.
        Both are read in the one statement the budget check makes anyway."""
        if not self.run_id:
            return
        budget, spent, status = run_sync(self._budget)
        if not after and self.stage_pk and status in STOPPED_RUN_STATUSES:
            raise RunNotRunning(self.run_id, status)
        if budget is None:
            return
        if spent > budget or (not after and spent >= budget):
            raise BudgetExceeded(self.run_id, fmt(budget), fmt(spent))

    def _record_failure(
        self, spec: ModelSpec, call_type: str, prompt: str, exc: BaseException, started: float, metadata: dict
    ) -> None:
        record = self._entry(
            spec,
            call_type,
            prompt=prompt,
            response=None,
            latency_ms=elapsed_ms(started),
            error=error_text(exc),
            metadata=metadata,
        )
        self._record(record)

    def _entry(self, spec: ModelSpec, call_type: str, **fields: Any) -> CallRecord:
        """A :class:`CallRecord` of a call to ``spec`` attributed to this helper's topic, run and stage."""
        fields.setdefault("topic", self.topic)
        fields.setdefault("usage", Usage())
        fields.setdefault("cost", ZERO)
        return CallRecord(
            call_type=call_type,
            model_key=spec.key,
            model_id=spec.model_id,
            run_id=self.run_id,
            stage_pk=self.stage_pk,
            workflow_id=self.workflow_id,
            stage_key=self.stage_key,
            **fields,
        )

    def _record(self, record: CallRecord, *, check_budget: bool = True) -> Any:
        """Write the row; returns ``None``, or the row another execution of the stage recorded first under
        ``record.call_key`` (then nothing is written: the journal keeps one row per logical call)."""
        cost, usage = record.cost, record.usage
        try:
            self.remember_attribution(write_call(record))
        except AlreadyRecorded as exc:
            logger.warning(
                "AI call %s of stage %s was recorded by another execution of the stage first; this execution's "
                "provider call (cost %s) is not recorded.",
                record.call_key.rsplit(":", 1)[0] if record.call_key else "?",
                self.stage_pk,
                fmt(cost) if cost is not None else "unpriced",
            )
            if check_budget and (cost or usage.total_tokens):
                self._check_budget(after=True)
            return exc.row
        if self._usage_sink is not None and record.call_type != "tool":
            self._usage_sink.add(cost or ZERO, usage.total_tokens)
        if check_budget and (cost or usage.total_tokens):
            self._check_budget(after=True)
        return None

    def remember_attribution(self, row: Any) -> None:
        """Keep the workflow and stage ids a recorded call was given, so later calls need not read them."""
        self.workflow_id = self.workflow_id or row.workflow_id
        self.stage_key = self.stage_key or row.stage_key
