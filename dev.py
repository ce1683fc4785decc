#!/usr/bin/env python3
"""The project's one entry point: ``python3 dev.py demo | test | setup``.

Standard library only, so it runs on a fresh machine with nothing but Python 3.11+:

* ``setup``: create ``.venv`` if missing and ``pip install -e ".[dev]"`` (skipped while pyproject.toml is unchanged).
* ``demo``: setup, then migrate the example project and run its demo (SQLite + database job queue, no services).
* ``typecheck``: setup, then mypy with the django-stubs plugin (also a step of ``test`` on the default leg).
* ``test``: setup, provision (``.ci/provision``: PostgreSQL and Redis up, Chromium present, installed with
  apt-get where missing; ``WORKFLOW_ENGINE_PROVISION=0`` skips it), then lint, format check, migrations check,
  mypy (default leg: the stubs follow Django 5.2), pytest on SQLite, and pytest again on PostgreSQL when it is reachable at ``DATABASE_URL``. Extra arguments go
  to both pytest runs: ``dev.py test -k cancel``.

``--django6`` (before the command) selects the second supported leg for ``setup`` and ``test``: Django 6.1 on
Python 3.12 in ``.venv-django6`` (the default leg is Django 5.2 LTS in ``.venv`` on the Python running dev.py).
Python 3.12 is looked up as ``$DWE_PYTHON312``, pyenv's ``versions/3.12.*``, then ``python3.12`` on PATH.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".dev-install-stamp"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
MANAGE = ROOT / "example_project" / "manage.py"
PROVISION = ROOT / ".ci" / "provision"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/dwe_tests"
POSTGRES_TEST_PATHS = [
    "tests/conformance",
    "tests/integration",
    "tests/acceptance",
    "tests/admin",
    "tests/ai",
    "tests/tasks",
]
# Variables that would silently switch the "embedded default" runs onto other services.
SERVICE_VARS = ("DATABASE_URL", "REDIS_URL")
# What setup installs into the venv besides ".[dev]": each leg pins its Django (pip would otherwise pick 6.x for
# the default leg when dev.py runs on Python 3.12+).
EXTRA_REQUIREMENTS: list[str] = ["django>=5.2,<5.3"]
BASE_PYTHON = sys.executable
# mypy runs in ``test`` on the default leg only: django-stubs describes Django 5.2, not 6.1.
TYPECHECK_IN_TEST = True


def python312() -> str:
    """The real binary of a Python 3.12 for the Django 6 leg (a pyenv shim is resolved through the interpreter)."""
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    if shutil.which("pyenv"):
        found = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False).stdout.strip()
        pyenv_root = found or pyenv_root
    candidates = [os.environ.get("DWE_PYTHON312")]
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.12.*", "bin", "python3.12")), reverse=True)
    candidates.append(shutil.which("python3.12"))
    probe = "import sys; print(sys.executable if sys.version_info[:2] == (3, 12) else '')"
    for candidate in filter(None, candidates):
        result = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    sys.exit("The --django6 leg needs Python 3.12: install it (e.g. pyenv install 3.12) or set DWE_PYTHON312.")


def use_django6_leg() -> None:
    """Point setup and test at the Django 6.1 / Python 3.12 environment, ``.venv-django6``."""
    global VENV, STAMP, PYTHON, BASE_PYTHON, EXTRA_REQUIREMENTS, TYPECHECK_IN_TEST
    VENV = ROOT / ".venv-django6"
    STAMP = VENV / ".dev-install-stamp"
    PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    BASE_PYTHON = python312() if not PYTHON.exists() else BASE_PYTHON
    EXTRA_REQUIREMENTS = ["django>=6.1,<6.2"]
    TYPECHECK_IN_TEST = False


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run(args: list[str | Path], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> int:
    """Run a command from the repository root; exit with its status unless it is one of ``ok``."""
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=False)
    if result.returncode not in ok:
        print(f"\nFAILED (exit {result.returncode}): {' '.join(str(a) for a in args)}", file=sys.stderr)
        sys.exit(result.returncode)
    return result.returncode


def pytest(args: list[str], env: dict[str, str]) -> None:
    # Exit status 5 is "no tests collected", e.g. a -k filter that matches nothing in one of the passes.
    if run([PYTHON, "-m", "pytest", *args], env=env, ok=(0, 5)) == 5:
        print("Notice: pytest collected no tests in this pass.")


def clean_env(drop: tuple[str, ...] = ("DATABASE_URL",), **extra: str) -> dict[str, str]:
    """The environment for a step: without ``drop`` (so runs are on SQLite unless asked), repo root importable."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def setup() -> None:
    if not PYTHON.exists():
        step(f"Creating virtualenv {VENV.relative_to(ROOT)}")
        run([BASE_PYTHON, "-m", "venv", VENV])
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + repr(EXTRA_REQUIREMENTS).encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    step(f'Installing the package into {VENV.name}: pip install -e ".[dev]" {" ".join(EXTRA_REQUIREMENTS)}')
    run([PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", ".[dev]", *EXTRA_REQUIREMENTS])
    STAMP.write_text(digest + "\n")


def demo() -> None:
    ignored = [name for name in SERVICE_VARS if name in os.environ]
    if ignored:
        print(f"Note: ignoring {', '.join(ignored)}; the demo runs on the embedded default (SQLite, database queue).")
    env = clean_env(drop=SERVICE_VARS)
    step("Migrating the example project (example_project/db.sqlite3)")
    run([PYTHON, MANAGE, "migrate", "--verbosity", "0"], env=env)
    step("Running the demo")
    run([PYTHON, MANAGE, "demo"], env=env)


def postgres_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def provision() -> None:
    """PostgreSQL and Redis up, Chromium present (see .ci/provision); on failure its one line says why."""
    if os.environ.get("WORKFLOW_ENGINE_PROVISION") == "0":
        print("Note: WORKFLOW_ENGINE_PROVISION=0, services and Chromium were not checked.")
        return
    bash = shutil.which("bash")
    if bash is None:
        sys.exit(
            "provision: FAILED: .ci/provision needs bash (Debian/Ubuntu); start PostgreSQL and Redis, install "
            "Chromium at /usr/bin/chromium yourself and set WORKFLOW_ENGINE_PROVISION=0."
        )
    result = subprocess.run([bash, str(PROVISION)], cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def test(pytest_args: list[str]) -> None:
    provision()
    env = clean_env()
    step("ruff check .")
    run([PYTHON, "-m", "ruff", "check", "."], env=env)
    step("ruff format --check .")
    run([PYTHON, "-m", "ruff", "format", "--check", "."], env=env)
    step("makemigrations --check (tests.settings)")
    run(
        [PYTHON, "-m", "django", "makemigrations", "--check", "--dry-run", "--settings=tests.settings"],
        env=env,
    )
    if TYPECHECK_IN_TEST:
        typecheck()
    step("pytest on SQLite (whole suite)")
    pytest(pytest_args, env)

    database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    parts = urlsplit(database_url)
    shown = f"{parts.hostname}:{parts.port or 5432}{parts.path}"  # without the password
    if not postgres_reachable(database_url):
        message = f"PostgreSQL is not reachable at {shown}"
        if os.environ.get("WORKFLOW_ENGINE_REQUIRE_SERVICES") == "1":
            print(f"\nFAILED: {message}, and WORKFLOW_ENGINE_REQUIRE_SERVICES=1.", file=sys.stderr)
            print("Start it (.ci/provision does) or set DATABASE_URL to a reachable server.", file=sys.stderr)
            sys.exit(1)
        print(f"\nNotice: {message}; the PostgreSQL pass was SKIPPED (postgres-marked tests did not run).")
        return
    step(f"pytest on PostgreSQL ({shown}): {' '.join(POSTGRES_TEST_PATHS)}")
    pytest([*POSTGRES_TEST_PATHS, *pytest_args], clean_env(DATABASE_URL=database_url))


def typecheck() -> None:
    # The configuration (django-stubs plugin, checked modules) is in pyproject.toml.
    step("mypy (django-stubs plugin, settings tests.settings)")
    run([PYTHON, "-m", "mypy"], env=clean_env())


USAGE = """usage: python3 dev.py [--django6] {demo,test,typecheck,setup} [pytest args...]

  demo       set up .venv, migrate the example project and run its demo (SQLite, no services)
  test       set up .venv, provision services and Chromium (.ci/provision), then ruff, migrations check,
             mypy (default leg), pytest (SQLite), pytest (PostgreSQL if reachable)
  typecheck  set up .venv, then mypy over the package
  setup      only create .venv and install the package with its dev extra

  --django6  use the Django 6.1 / Python 3.12 leg (.venv-django6) instead of Django 5.2 LTS (.venv)"""


def main(argv: list[str]) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 -- dev.py is run by whatever python3 the machine has
        sys.exit(f"Python 3.11+ is required, this is {sys.version.split()[0]}.")
    if argv[:1] == ["--django6"]:
        argv = argv[1:]
        use_django6_leg()
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command not in ("demo", "test", "typecheck", "setup") or (rest and command != "test"):
        sys.exit(USAGE)
    setup()
    if command == "demo":
        demo()
    elif command == "test":
        test(rest)
        print("\nAll checks passed.")
    elif command == "typecheck":
        typecheck()


if __name__ == "__main__":
    main(sys.argv[1:])
