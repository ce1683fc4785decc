""".ci/provision, the step ``dev.py test`` and ``.ci/run`` start with: where it cannot provide a service it fails
with one line saying what is missing, why it cannot be installed, and what to do instead.

Each case runs the real script with ``PATH`` limited to a directory of stand-in commands, so the machine looks
like one without PostgreSQL, with or without apt-get, as root or not; nothing is installed or started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "provision"
BASH = shutil.which("bash")
# Real tools the script uses on the paths these cases take.
TOOLS = ("ls", "sort", "tail", "seq", "sleep", "sed")

pytestmark = pytest.mark.skipif(BASH is None, reason="bash is needed to run .ci/provision")


def machine(tmp_path: Path, *, uid: int, apt: bool, sudo: bool = False) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        real = shutil.which(tool)
        assert real is not None, tool
        (bin_dir / tool).symlink_to(real)
    stubs = {
        "id": f'[ "$1" = -u ] && echo {uid}',
        "pg_isready": "exit 2",  # no server answering
        "redis-cli": "exit 1",
        "apt-get": 'echo "apt-get $*" >> "$(dirname "$0")/../apt.log"; exit 0' if apt else None,
        "sudo": "exit 0" if sudo else None,
    }
    for name, body in stubs.items():
        if body is not None:
            path = bin_dir / name
            path.write_text(f"#!{BASH}\n{body}\n")
            path.chmod(0o755)
    return bin_dir


def provision(bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(SCRIPT)],
        env={"PATH": str(bin_dir), "HOME": str(bin_dir.parent), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_no_apt_get_fails_with_one_line_naming_the_service_and_the_fix(tmp_path):
    result = provision(machine(tmp_path, uid=0, apt=False))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "provision: FAILED: PostgreSQL is missing and cannot be installed: there is no apt-get on this machine; "
        "or install it yourself: apt-get install -y postgresql"
    ]


def test_not_root_and_no_sudo_fails_with_one_line_and_installs_nothing(tmp_path):
    bin_dir = machine(tmp_path, uid=1000, apt=True, sudo=False)
    result = provision(bin_dir)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "provision: FAILED: PostgreSQL is missing and cannot be installed: installing needs root (run as root, "
        "or give passwordless sudo); or install it yourself: apt-get install -y postgresql"
    ]
    assert not (tmp_path / "apt.log").exists()


def test_services_on_other_hosts_are_left_alone(tmp_path):
    """DATABASE_URL and REDIS_URL pointing elsewhere: neither is checked nor installed here."""
    bin_dir = machine(tmp_path, uid=1000, apt=False)
    result = provision(
        bin_dir, DATABASE_URL="postgres://postgres@db.internal:5432/x", REDIS_URL="redis://cache.internal:6379/0"
    )
    if not os.access("/usr/bin/chromium", os.X_OK):
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            "provision: FAILED: Chromium is missing and cannot be installed: installing needs root (run as root, "
            "or give passwordless sudo); or install it yourself: apt-get install -y chromium"
        ]
        return
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "provision: PostgreSQL elsewhere (DATABASE_URL), Redis elsewhere (REDIS_URL), Chromium present"
    ]
