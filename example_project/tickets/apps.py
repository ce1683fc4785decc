import sys

from django.apps import AppConfig

# Commands that execute stages (and so make AI calls). Others (migrate, runserver...) do not pay for litellm's
# import, which starting the offline answers needs.
AI_COMMANDS = frozenset({"demo", "runworker", "runmaintenance", "startrun", "shell"})


class TicketsConfig(AppConfig):
    """The AI example app: ``workflows.py`` defines the ``ticket-intelligence`` pipeline.

    With ``TICKETS_AI_MODE = "offline"`` in settings (the example project sets it when no ``OPENAI_API_KEY`` is
    in the environment), the commands that run stages answer AI calls from :mod:`tickets.offline` instead of a
    provider, so ``demo``, ``runworker`` and ``runmaintenance`` work with no key and no network.
    """

    name = "tickets"
    verbose_name = "Support tickets (AI example)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[0].endswith("manage.py") else None
        if getattr(settings, "TICKETS_AI_MODE", "live") == "offline" and command in AI_COMMANDS:
            from .offline import start_offline_ai

            start_offline_ai()
