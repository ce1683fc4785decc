"""The test settings with Django's default SQLite configuration: ``ENGINE`` and ``NAME``, no ``OPTIONS``.

What ``django-admin startproject`` writes (no ``transaction_mode``, no ``timeout``, rollback journal): the
embedded default must work with several processes on it (``tests/acceptance/test_sqlite_default.py``). Engine
warnings and errors go to stderr, so a process's log shows every traceback it logged.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import BASE_TMP

_url = os.environ.get("DATABASE_URL", "")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _url.removeprefix("sqlite:///")
        if _url.startswith("sqlite:///")
        else os.path.join(BASE_TMP, "db.sqlite3"),
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"django_workflow_engine": {"handlers": ["stderr"], "level": "WARNING"}},
}
