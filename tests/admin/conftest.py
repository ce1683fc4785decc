"""Users with each permission level, logged-in clients, and a bulk seeder for a large history."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests import flows

from .factories import seed_runs

__all__ = ["make_user", "seed_runs"]

APP = "django_workflow_engine"
MODELS = ("workflowrun", "workflowstage", "workflowjob", "workflowlog", "workflowartifact", "aicall")
VIEW_PERMS = [f"view_{m}" for m in MODELS]


@pytest.fixture(autouse=True)
def _reset_flows():
    flows.reset()
    yield
    flows.reset()


def make_user(username: str, *codenames: str, superuser: bool = False, staff: bool = True) -> User:
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.com", "pw")
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=staff)
    if codenames:
        user.user_permissions.set(Permission.objects.filter(content_type__app_label=APP, codename__in=codenames))
    return user


ROLES: dict[str, tuple[tuple[str, ...], bool]] = {
    "superuser": ((), True),
    "noperm": ((), False),
    "viewer": (tuple(VIEW_PERMS), False),
    "canceller": ((*VIEW_PERMS, "cancel_workflowrun"), False),
    "rerunner": ((*VIEW_PERMS, "rerun_workflowrun"), False),
}


@pytest.fixture
def login(db) -> Callable[..., Client]:
    """``login("viewer")`` -> a client logged in as a fresh user with that role's permissions."""
    counter = itertools.count()

    def _login(role: str, *, enforce_csrf: bool = False) -> Client:
        codenames, superuser = ROLES[role]
        user = make_user(f"{role}{next(counter)}", *codenames, superuser=superuser)
        client = Client(enforce_csrf_checks=enforce_csrf)
        client.force_login(user)
        client.user = user  # type: ignore[attr-defined]
        return client

    return _login


@pytest.fixture
def admin_client_(login) -> Client:
    return login("superuser")
