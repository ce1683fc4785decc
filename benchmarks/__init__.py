"""Benchmarks of django-workflow-engine (see README.md). Not part of the installed package."""
