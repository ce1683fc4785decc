"""Settings for the example site.

With no environment it is a single-machine install: SQLite in ``example_project/db.sqlite3`` and the database job
queue. ``DATABASE_URL`` switches to PostgreSQL (or any dj-database-url URL; ``dj-database-url`` is installed with
the ``dev`` extra); ``REDIS_URL`` switches the transport to RQ: start workers with ``manage.py runworker`` and
maintenance with ``manage.py runmaintenance``.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

# A development-only key; set SECRET_KEY in the environment anywhere that is not your laptop.
SECRET_KEY = os.environ.get("SECRET_KEY", "example-project-insecure-development-key")
DEBUG = os.environ.get("DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "django_workflow_engine",
    "documents",
    "tickets",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

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

DATABASE_URL = os.environ.get("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite shared by the site, workers and maintenance (docs/operating.md): every transaction takes the write
    # lock when it begins, a busy database is waited for up to 20 s, and readers never block the writer (WAL).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

WORKFLOW_ENGINE = {"TRANSPORT": "database"}

# The ticket-intelligence pipeline calls OpenAI through litellm when a key is set; without one, the commands that
# run stages answer its AI calls offline with deterministic mock responses (tickets/offline.py), still recorded
# and priced as AICall rows.
TICKETS_AI_MODE = "live" if os.environ.get("OPENAI_API_KEY") else "offline"

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    RQ_QUEUES = {"workflows": {"URL": REDIS_URL}}
    WORKFLOW_ENGINE["TRANSPORT"] = "rq"
else:
    # django_rq is installed for its admin dashboard; nothing is enqueued while TRANSPORT is "database".
    RQ_QUEUES = {"workflows": {"URL": "redis://127.0.0.1:6379/0"}}

MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or BASE_DIR / "media")
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": "/media/"},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_URL = "/media/"
STATIC_URL = "/static/"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_workflow_engine": {"handlers": ["console"], "level": "WARNING"}},
}
