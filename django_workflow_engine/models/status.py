from django.db import models


class Status(models.TextChoices):
    """One status vocabulary for runs, stages and jobs."""

    PENDING = "PENDING", "Pending"
    RUNNING = "RUNNING", "Running"
    SUSPENDED = "SUSPENDED", "Suspended"
    COMPLETED = "COMPLETED", "Completed"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"
    SKIPPED = "SKIPPED", "Skipped"


TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
