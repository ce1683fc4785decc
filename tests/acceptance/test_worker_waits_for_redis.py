"""``runworker`` started while Redis is down waits for it (with a log line per retry) instead of exiting, so a
service manager's ``Restart=always`` does not crash-loop it; once Redis answers, it works."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from django_workflow_engine.models import WorkflowRun

from .conftest import wait_until

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary"),
]

RQ = {"TRANSPORT": "rq", "HEARTBEAT_SECONDS": 1, "LEASE_SECONDS": 5}


def _free_port() -> int:
    for port in range(6390, 6490):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 6390-6489")


def _log(proc) -> str:
    return Path(proc.log_path).read_text()


def test_runworker_waits_for_redis_then_executes_runs(processes, tmp_path):
    port = _free_port()
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "DWE_TEST_LOG_CONSOLE": "1"}
    worker = processes.start("runworker", "--worker-id", "patient", engine_settings=RQ, env=env, name="worker")
    wait_until(lambda: _log(worker).count("is unreachable") >= 2, timeout=60, message="two retry lines")
    assert worker.poll() is None, _log(worker)
    log = _log(worker)
    assert f"worker patient: Redis at 127.0.0.1:{port}/0 is unreachable" in log
    assert "retrying in 1 s" in log
    assert "retrying in 2 s" in log  # backoff
    assert "Traceback" not in log

    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: "is reachable; starting" in _log(worker), timeout=60, message="worker to see Redis")
        starter = processes.start(
            "startrun", "triple", "--input", '{"n": 2}', engine_settings=RQ, env=env, name="startrun"
        )
        assert starter.wait(timeout=60) == 0, _log(starter)
        wait_until(
            lambda: WorkflowRun.objects.filter(status="COMPLETED").exists(), timeout=60, message="run to complete"
        )
        assert WorkflowRun.objects.get().output == {"sum": 4}
        assert worker.poll() is None
    finally:
        processes.stop_all()
        redis.terminate()
        try:
            redis.wait(timeout=10)
        except subprocess.TimeoutExpired:
            redis.kill()
            redis.wait()
    assert "Traceback" not in _log(worker)


def test_runworker_stops_cleanly_while_waiting(processes):
    port = _free_port()
    worker = processes.start(
        "runworker",
        engine_settings=RQ,
        env={"REDIS_URL": f"redis://127.0.0.1:{port}/0", "DWE_TEST_LOG_CONSOLE": "1"},
        name="worker",
    )
    wait_until(lambda: "is unreachable" in _log(worker), timeout=60, message="a retry line")
    worker.terminate()
    assert worker.wait(timeout=20) == 0, _log(worker)
    assert "Traceback" not in _log(worker)
