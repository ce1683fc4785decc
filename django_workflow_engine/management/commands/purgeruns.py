"""``manage.py purgeruns``: delete finished runs older than an age, in short batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_workflow_engine.ops.retention import DEFAULT_BATCH_SIZE


class Command(BaseCommand):
    help = (
        "Delete finished runs (COMPLETED, FAILED, CANCELLED) last updated longer ago than --older-than, with "
        "their stages, jobs, logs, artifacts, events, idempotency keys and blobs. AI call rows (the cost "
        "history) are kept."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than", required=True, help="age, e.g. 30d, 12h, 2w (units s m h d w)")
        parser.add_argument(
            "--status",
            action="append",
            default=None,
            help="only runs in this finished status (repeat or comma-separate; default all three)",
        )
        parser.add_argument("--workflow", action="append", default=None, help="only runs of this workflow id (repeat)")
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
        parser.add_argument(
            "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="runs per transaction (1-10000, default 100)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django_workflow_engine.ops.retention import InvalidRetention, RetentionPolicy, purge_runs

        flags = {"older_than": "--older-than", "statuses": "--status", "batch_size": "--batch-size"}
        try:
            policy = RetentionPolicy.build(
                options["older_than"],
                options["status"],
                options["workflow"],
                options["batch_size"],
                label=flags.__getitem__,
            )
        except InvalidRetention as exc:
            raise CommandError(str(exc), returncode=2) from None
        verbose = options["verbosity"] > 1

        def progress(result: Any) -> None:
            if verbose:
                self.stdout.write(f"  batch {result.batches}: {result.runs} runs deleted so far")

        result = purge_runs(policy, dry_run=options["dry_run"], progress=progress)
        if result.dry_run:
            self.stdout.write(f"Would delete {result.runs} run(s) finished more than {options['older_than']} ago:")
            for (workflow_id, status), n in sorted(result.matched.items()):
                self.stdout.write(f"  {workflow_id}  {status}  {n}")
            return
        rate = result.total_rows / result.seconds if result.seconds else 0.0
        self.stdout.write(
            f"Deleted {result.runs} run(s) and {result.total_rows} row(s) in {result.batches} batch(es), "
            f"{result.seconds:.1f} s ({rate:.0f} rows/s)"
        )
        for name, n in sorted(result.rows.items()):
            if n:
                self.stdout.write(f"  {name}: {n}")
