# Thin aliases; dev.py is the real entry point (it also creates .venv and installs the package).
PYTHON ?= python3
RUFF = .venv/bin/ruff

.PHONY: demo test setup lint format

demo:
	$(PYTHON) dev.py demo

test:
	$(PYTHON) dev.py test $(ARGS)

setup:
	$(PYTHON) dev.py setup

lint: setup
	$(RUFF) check .
	$(RUFF) format --check .

format: setup
	$(RUFF) check --fix .
	$(RUFF) format .
