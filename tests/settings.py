"""Settings for the test suite. ``DATABASE_URL`` selects the database (default: SQLite in a temp dir)."""

import json
import os
import tempfile
from typing import Any

import dj_database_url
import django

BASE_TMP = os.environ.get("WORKFLOW_ENGINE_TEST_TMP") or tempfile.mkdtemp(prefix="dwe-tests-")

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "django_workflow_engine",
    "tests.testapp",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # the backport of Django 6's tasks framework

# Django's tasks framework, run by the engine (tests/tasks). "emails" is a second accepted queue name.
TASKS = {"default": {"BACKEND": "django_workflow_engine.tasks.WorkflowEngineBackend", "QUEUES": ["default", "emails"]}}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_url = os.environ.get("DATABASE_URL")
if _url:
    DATABASES = {"default": dj_database_url.parse(_url, conn_max_age=0)}
    DATABASES["default"].setdefault("TEST", {})
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(BASE_TMP, "db.sqlite3"),
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
            "TEST": {"NAME": os.path.join(BASE_TMP, "test.sqlite3")},
        }
    }

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
    # Under pytest-xdist each test process (and the workers it spawns, which inherit the variable) gets its own
    # Redis database, counting down from REDIS_URL's: tests flush their database, and a burst worker must see only
    # its own test's jobs.
    _base, _, _db = REDIS_URL.rpartition("/")
    REDIS_URL = f"{_base}/{(int(_db or 0) - int(os.environ['PYTEST_XDIST_WORKER'][2:])) % 16}"
RQ_QUEUES = {"workflows": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600}}

STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": os.path.join(BASE_TMP, "media")},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = os.path.join(BASE_TMP, "media")
STATIC_URL = "/static/"

WORKFLOW_ENGINE = {"TRANSPORT": "database", "RETRY_BASE_SECONDS": 0}
# Acceptance tests start real processes with extra engine settings (short leases, the RQ transport...).
WORKFLOW_ENGINE.update(json.loads(os.environ.get("DWE_ENGINE_SETTINGS", "{}")))

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_workflow_engine": {"handlers": ["null"], "level": "INFO"}},
}
# Acceptance tests that read a process's log lines ask for them on stderr.
if os.environ.get("DWE_TEST_LOG_CONSOLE") == "1":
    LOGGING["handlers"]["console"] = {"class": "logging.StreamHandler"}
    LOGGING["loggers"]["django_workflow_engine"]["handlers"] = ["console"]

# Fault injection: shift this process's engine clock (the chaos tests run workers with skewed clocks).
_CLOCK_SKEW = float(os.environ.get("DWE_CLOCK_SKEW_SECONDS", "0") or 0)
if _CLOCK_SKEW:
    from datetime import timedelta

    from django_workflow_engine.kernel.clock import SystemClock as _SystemClock

    _true_now = _SystemClock.now
    _SystemClock.now = lambda self: _true_now(self) + timedelta(seconds=_CLOCK_SKEW)  # type: ignore[method-assign]
