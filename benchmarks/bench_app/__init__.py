"""A Django app holding the benchmark workflow (autodiscovered ``workflows.py``)."""
