"""The report arithmetic of ``benchmarks/live.py``: each engine phase is compared only with the peers of its own
round, and the order of the systems rotates from round to round (no Celery, DBOS or services needed)."""

from __future__ import annotations

import pytest

from benchmarks.live import ratios, round_order, summary


def phase(system: str, round_no: int, rate: float, p50: float = 1.0, p95: float = 2.0) -> dict:
    return {"system": system, "round": round_no, "stages_per_s": rate, "start_ms_p50": p50, "start_ms_p95": p95}


def test_each_round_compares_the_engine_with_its_own_peers_only():
    results = [
        phase("engine", 0, 300.0),
        phase("celery", 0, 600.0),
        phase("rq", 0, 200.0),
        # the machine got twice as slow: the ratios stay those of the round
        phase("celery", 1, 300.0),
        phase("engine", 1, 150.0),
        phase("rq", 1, 100.0),
        # a round where the engine failed gives no ratio; a failed peer gives none for that peer
        {"system": "engine", "round": 2, "error": "boom"},
        phase("celery", 2, 999.0),
        phase("engine", 3, 400.0),
        {"system": "celery", "round": 3, "error": "boom"},
        phase("rq", 3, 100.0),
    ]
    assert ratios(results) == {"celery": [0.5, 0.5], "rq": [1.5, 1.5, 4.0]}


def test_summary_gives_medians_and_each_rounds_ratio():
    results = [
        phase("engine", 0, 300.0, p50=1.0, p95=4.0),
        phase("celery", 0, 600.0),
        phase("engine", 1, 100.0, p50=3.0, p95=8.0),
        phase("celery", 1, 50.0),
        phase("engine", 2, 200.0, p50=2.0, p95=6.0),
        phase("celery", 2, 400.0),
    ]
    rows = {row["system"]: row for row in summary(results)}
    assert rows["engine"]["stages_per_s_median"] == 200.0
    assert (rows["engine"]["start_ms_p50_median"], rows["engine"]["start_ms_p95_median"]) == (2.0, 6.0)
    assert "engine_ratio_median" not in rows["engine"]
    assert rows["celery"]["engine_ratio_each"] == [0.5, 2.0, 0.5]
    assert rows["celery"]["engine_ratio_median"] == 0.5
    assert rows["celery"]["rounds"] == 3


def test_the_engine_on_its_database_transport_gets_ratios_of_its_own():
    results = [
        phase("engine", 0, 300.0),
        phase("engine-db", 0, 450.0),
        phase("celery", 0, 300.0),
        phase("engine-db", 1, 220.0),
        phase("celery", 1, 200.0),
    ]
    assert ratios(results, "engine-db") == {"celery": [1.5, 1.1]}
    rows = {row["system"]: row for row in summary(results)}
    assert rows["celery"]["engine_ratio_each"] == [1.0]
    assert rows["celery"]["engine_db_ratio_each"] == [1.5, 1.1]
    assert rows["celery"]["engine_db_ratio_median"] == pytest.approx(1.3)
    assert "engine_db_ratio_median" not in rows["engine-db"]


@pytest.mark.parametrize(
    ("round_no", "expected"),
    [
        (0, ["engine", "celery", "dbos", "rq"]),
        (1, ["celery", "dbos", "rq", "engine"]),
        (3, ["rq", "engine", "celery", "dbos"]),
        (4, ["engine", "celery", "dbos", "rq"]),
    ],
)
def test_the_order_rotates_each_round(round_no, expected):
    assert round_order(["engine", "celery", "dbos", "rq"], round_no) == expected
