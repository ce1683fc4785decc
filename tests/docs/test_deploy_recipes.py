"""The deployment recipes (docs/deploy: docker-compose and systemd units) name commands and flags that exist:
each ``manage.py`` command line is parsed by that command's own parser, and docs/operating.md shows the files
as they are."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands, load_command_class

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"
OPERATING = DEPLOY.parent / "operating.md"


def compose_commands() -> list[tuple[str, list[str]]]:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    found = []
    for name, service in compose["services"].items():
        command = service.get("command")
        if isinstance(command, str):
            found.append((f"compose {name}", shlex.split(command)))
        test = (service.get("healthcheck") or {}).get("test")
        if test and test[0] == "CMD":
            found.append((f"compose {name} healthcheck", list(test[1:])))
    return found


def unit_commands() -> list[tuple[str, list[str]]]:
    found = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(unit.read_text())
        for key in ("ExecStartPre", "ExecStart"):
            if parser.has_option("Service", key):
                # systemd expands its specifiers (%H host, %i instance) before the command runs
                line = parser.get("Service", key).replace("%H", "box-1").replace("%i", "1")
                found.append((f"{unit.name} {key}", shlex.split(line)))
    return found


def manage_py(argv: list[str]) -> list[str] | None:
    """The arguments after ``manage.py`` in a command line, or None when it is not a manage.py command."""
    for i, arg in enumerate(argv):
        if arg.endswith("manage.py"):
            return argv[i + 1 :]
    return None


ALL = compose_commands() + unit_commands()


def test_the_recipes_run_every_process_the_issue_lists():
    names = {manage_py(argv)[0] for _, argv in ALL if manage_py(argv)}
    assert {"migrate", "runworker", "runmaintenance", "workerstatus"} <= names
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert {"web", "worker", "maintenance", "db", "redis"} <= set(compose["services"])


@pytest.mark.parametrize(("where", "argv"), ALL, ids=[w for w, _ in ALL])
def test_each_command_exists_and_its_flags_parse(where, argv):
    args = manage_py(argv)
    if args is None:
        assert argv[0].endswith("gunicorn") or argv[0] in {"redis-server", "pg_isready"}, (where, argv)
        return
    name, rest = args[0], args[1:]
    app = get_commands().get(name)
    assert app is not None, f"{where}: manage.py {name} does not exist"
    command = load_command_class(app, name)
    parser = command.create_parser("manage.py", name)
    parser.parse_args(rest)  # argparse exits (SystemExit 2) on an unknown flag or a bad value


def test_operating_md_shows_the_recipes_as_they_are():
    text = OPERATING.read_text()
    for path in [DEPLOY / "docker-compose.yml", *sorted((DEPLOY / "systemd").glob("*.service"))]:
        assert path.read_text().strip() in text, f"docs/operating.md does not show {path.name} as it is"
