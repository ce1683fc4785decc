"""Django settings for the benchmark site: the test settings plus the benchmark workflow app.

Environment (set by the benchmark scripts for each child process):
    DATABASE_URL          default postgres://postgres@127.0.0.1:5432/dwe_bench
    REDIS_URL             default redis://127.0.0.1:6379/13 (not the test suite's db 15)
    DWE_ENGINE_SETTINGS   JSON merged into WORKFLOW_ENGINE, e.g. {"TRANSPORT": "rq"}
    BENCH_CONN_MAX_AGE    CONN_MAX_AGE of the default database (default 0: Django's default)
    BENCH_SQLITE_OPTIONS  JSON OPTIONS of a SQLite database (default: the test settings')
"""

import json
import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dwe_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, INSTALLED_APPS

# Only the benchmark's workflow: the test app's workflows include an AI stage, which would make workers preload
# litellm and measure a different footprint.
INSTALLED_APPS = [*(app for app in INSTALLED_APPS if app != "tests.testapp"), "benchmarks.bench_app"]
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("BENCH_CONN_MAX_AGE", "0"))
if DATABASES["default"]["ENGINE"].endswith("sqlite3") and "BENCH_SQLITE_OPTIONS" in os.environ:
    DATABASES["default"]["OPTIONS"] = json.loads(os.environ["BENCH_SQLITE_OPTIONS"])

# Warnings and errors of the engine go to the process's stderr (the benchmark keeps one log file per process).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"django_workflow_engine": {"handlers": ["stderr"], "level": "WARNING"}},
}
