#!/usr/bin/env python3
"""Django's command-line utility for the example project (runs from a checkout: the repo root is importable)."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    # The script's own folder is sys.path[0]; the repository root comes right after it so that the checkout's
    # django_workflow_engine is used even without `pip install -e .`.
    sys.path.insert(1, str(HERE.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
