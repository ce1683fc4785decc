"""A parent run's page lists its children (with the cost they add); a child's page links its parent."""

from __future__ import annotations

import pytest
from django.urls import reverse

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun

pytestmark = pytest.mark.django_db


def test_the_parent_page_lists_children_and_a_child_links_its_parent(admin_client_):
    parent = engine.start("onboard-all", {"names": ["<b>ada</b>"]})
    engine.run_until_idle()
    child = WorkflowRun.objects.get(parent_run_id=parent.id)

    page = admin_client_.get(reverse("admin:django_workflow_engine_workflowrun_change", args=[parent.id]))
    html = page.content.decode()
    assert 'id="dwe-children"' in html
    assert reverse("admin:django_workflow_engine_workflowrun_change", args=[child.id]) in html
    assert "&lt;b&gt;ada&lt;/b&gt;" in html  # the key, escaped
    assert "<b>ada</b>" not in html

    page = admin_client_.get(reverse("admin:django_workflow_engine_workflowrun_change", args=[child.id]))
    html = page.content.decode()
    assert reverse("admin:django_workflow_engine_workflowrun_change", args=[parent.id]) in html
    assert "Parent run" in html
