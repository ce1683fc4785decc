"""Messages rung for a later time are scheduled on whole seconds, never before the job is due."""

from datetime import UTC, datetime

from django_workflow_engine.adapters.rq import not_before


def test_a_fraction_of_a_second_rounds_up_not_down():
    # RQ's scheduler keeps whole-second timestamps: 11.396 s would be delivered at 11 s, before the job is due.
    assert not_before(datetime(2026, 12, 3, 10, 37, 11, 396369, tzinfo=UTC)) == datetime(
        2026, 12, 3, 10, 37, 12, tzinfo=UTC
    )


def test_a_whole_second_is_kept():
    at = datetime(2026, 12, 3, 10, 37, 59, tzinfo=UTC)
    assert not_before(at) == at
