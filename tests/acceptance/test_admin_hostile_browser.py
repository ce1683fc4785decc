"""Reflected XSS, tried in a real browser: every admin URL the app adds, loaded with hostile values in every
query parameter it reads (and in object ids and the action forms), must never open a dialog.

The parameters of each changelist are read from the admin itself (its list filters) and from the filter links
the page renders, so a filter added later is covered without editing this test.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.contrib import admin
from django.contrib.admin import SimpleListFilter
from django.urls import reverse

from django_workflow_engine import engine
from django_workflow_engine.models import AICall, WorkflowArtifact, WorkflowLog, WorkflowRun, WorkflowStage
from tests.admin.factories import seed_runs

from . import test_admin_browser as base

pytestmark = [pytest.mark.browser, pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

# The fixtures of the admin browser test, shared (same browser flags, same flows reset).
browser = base.browser
page = base.page
_reset_flows = base._reset_flows

APP = "django_workflow_engine"
# One value that breaks out of every HTML context (text, quoted and unquoted attributes, <title>, a JavaScript
# string), and one for URL attributes. Payloads avoid quotes so that a repr() or an escaped quote cannot defuse
# them by accident.
BREAKOUT = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>'-alert(3)-'</title><svg onload=alert(4)>"
SCRIPT_URL = "javascript:alert(5)"
HOSTILE = [BREAKOUT, SCRIPT_URL]
# Parameters Django's changelist reads itself: search, ordering, page, "show all", error flag, facets, popups.
CHANGELIST_PARAMS = ["q", "o", "p", "all", "e", "_facets", "_popup", "_to_field", "_changelist_filters"]
OBJECT_PARAMS = ["_changelist_filters", "_popup", "_to_field"]
MODELS = {"workflowrun": WorkflowRun, "workflowstage": WorkflowStage, "workflowlog": WorkflowLog}
MODELS |= {"workflowartifact": WorkflowArtifact, "aicall": AICall}


def url(name: str, *args: object) -> str:
    return reverse(f"admin:{APP}_{name}", args=args)


class Visitor:
    """Loads pages, records every dialog the page opens (and dismisses it), and every ``javascript:`` URL."""

    def __init__(self, page) -> None:  # type: ignore[no-untyped-def]
        self.page = page
        self.dialogs: list[tuple[str, str]] = []
        self.script_urls: list[tuple[str, str]] = []
        self.visited = 0
        self.current = ""
        page.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog) -> None:  # type: ignore[no-untyped-def]
        self.dialogs.append((self.current, dialog.message))
        dialog.dismiss()

    def goto(self, path: str, params: dict[str, str] | None = None) -> None:
        target = path + ("?" + urlencode(params) if params else "")
        self.current = target
        self.visited += 1
        try:
            self.page.goto(target, wait_until="load")
        except Exception as exc:  # a CSV download is not a page: nothing of it is rendered
            if "Download is starting" not in str(exc):
                raise
            return
        self._check_links()

    def submit(self, path: str, fields: list[tuple[str, str]]) -> None:
        """POST ``fields`` (plus this page's CSRF token) to ``path`` from a form built in the page, as a browser
        would, and wait for the answer to render."""
        self.current = f"POST {path} {fields}"
        self.visited += 1
        token = self.page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
        with self.page.expect_navigation(wait_until="load"):
            self.page.evaluate(
                """([action, fields]) => {
                    const form = document.createElement("form");
                    form.method = "post";
                    form.action = action;
                    for (const [name, value] of fields) {
                        const input = document.createElement("input");
                        input.type = "hidden";
                        input.name = name;
                        input.value = value;
                        form.appendChild(input);
                    }
                    document.body.appendChild(form);
                    form.submit();
                }""",
                [path, [["csrfmiddlewaretoken", token], *fields]],
            )
        self._check_links()

    def _check_links(self) -> None:
        found = self.page.eval_on_selector_all(
            "[href], [src], [action], [formaction]",
            """els => els.flatMap(e => ["href", "src", "action", "formaction"]
                .map(a => (e.getAttribute(a) || "").trim())
                .filter(v => v.toLowerCase().replace(/[\\s\\0]/g, "").startsWith("javascript:")))""",
        )
        self.script_urls.extend((self.current, value) for value in found)


@pytest.fixture
def visitor(page) -> Visitor:
    base.log_in(page)
    return Visitor(page)


def filter_params(visitor: Visitor, model: str) -> set[str]:
    """The query parameters a changelist's filters read: from the ModelAdmin's ``list_filter`` and from the
    links of the rendered filter sidebar."""
    model_admin = admin.site._registry[MODELS[model]]
    names: set[str] = set()
    for entry in model_admin.list_filter:
        if isinstance(entry, type) and issubclass(entry, SimpleListFilter):
            names.add(entry.parameter_name)
        else:
            field = entry[0] if isinstance(entry, tuple) else entry
            names.update({f"{field}__exact", f"{field}__isnull", f"{field}__gte", f"{field}__lt"})
    visitor.goto(url(f"{model}_changelist"))
    for href in visitor.page.eval_on_selector_all("#changelist-filter a", "els => els.map(e => e.href)"):
        names.update(key for key, _ in parse_qsl(urlsplit(href).query, keep_blank_values=True))
    return names


def test_no_admin_page_runs_script_from_the_request(visitor):
    done = seed_runs(2, ai_calls=3, logs=4)
    failed = seed_runs(1, status="FAILED", ai_calls=1, logs=1)[0]
    running = engine.start("diamond", {"value": 1})
    stage = WorkflowStage.objects.filter(run=done[0]).first()
    WorkflowArtifact.objects.create(run=done[0], stage=stage, key="report", data={"n": 1})
    objects = {
        "workflowrun": done[0].pk,
        "workflowstage": stage.pk,
        "workflowlog": WorkflowLog.objects.filter(run=done[0]).first().pk,
        "workflowartifact": WorkflowArtifact.objects.get(run=done[0]).pk,
        "aicall": AICall.objects.filter(run=done[0]).first().pk,
    }

    # Index pages.
    for path in (reverse("admin:index"), reverse("admin:app_list", args=[APP])):
        for value in HOSTILE:
            visitor.goto(path, {"q": value, "next": value})

    # Changelists: each parameter alone (an invalid filter value must not hide the others), then all at once.
    for model in MODELS:
        params = sorted(filter_params(visitor, model) | set(CHANGELIST_PARAMS))
        assert len(params) > len(CHANGELIST_PARAMS), model
        for value in HOSTILE:
            for name in params:
                visitor.goto(url(f"{model}_changelist"), {name: value})
            visitor.goto(url(f"{model}_changelist"), dict.fromkeys(params, value))

    # Object pages of every model (the run page reads its log level and log page), with real and hostile ids.
    for model, pk in objects.items():
        extra = ["level", "logs_page"] if model == "workflowrun" else []
        for value in HOSTILE:
            for view in ("change", "history", "delete"):
                visitor.goto(url(f"{model}_{view}", pk), dict.fromkeys([*OBJECT_PARAMS, *extra], value))
            visitor.goto(url(f"{model}_change", value))  # "... with ID <value> doesn't exist" message
            visitor.goto(url(f"{model}_add"), {"_changelist_filters": value, "_popup": value})

    # The run's own views, the cost report and its CSV export (the export's ?table= was the original hole).
    for value in HOSTILE:
        for run_id in (running.pk, failed.pk, value):
            visitor.goto(url("workflowrun_cancel", run_id), {"next": value})
            visitor.goto(url("workflowrun_rerun", run_id), {"stage": value, "next": value})
        visitor.goto(url("aicall_costs"), {"start": value, "end": value})
        visitor.goto(url("aicall_costs"), {"start": "2026-01-01", "end": value})
        for name in ("table", "start", "end"):
            visitor.goto(url("aicall_costs_csv"), {"table": "day", name: value})

    # Action confirmation pages and their answers, with hostile form values.
    changelist = url("workflowrun_changelist")
    for value in HOSTILE:
        visitor.goto(changelist)
        visitor.submit(changelist, [("action", value), ("_selected_action", running.pk), ("index", "0")])
        visitor.goto(changelist)
        picked = [("_selected_action", running.pk), ("_selected_action", value), ("reason", value)]
        visitor.submit(changelist, [("action", "cancel_selected_runs"), ("index", "0"), *picked])
        visitor.goto(changelist)
        picked = [("_selected_action", failed.pk), ("_selected_action", value)]
        visitor.submit(changelist, [("action", "rerun_selected_runs"), ("post", "yes"), ("stage", value), *picked])
        visitor.goto(url("workflowrun_rerun", failed.pk))
        visitor.submit(url("workflowrun_rerun", failed.pk), [("post", "yes"), ("stage", value)])

    # A cancellation whose reason is hostile: the messages it leaves and the run's history page.
    visitor.goto(url("workflowrun_cancel", running.pk))
    visitor.submit(url("workflowrun_cancel", running.pk), [("post", "yes"), ("reason", BREAKOUT)])
    assert WorkflowRun.objects.get(pk=running.pk).status == "CANCELLED"
    visitor.goto(url("workflowrun_history", running.pk))
    assert BREAKOUT in visitor.page.locator("#change-history").inner_text()  # shown, as text

    assert visitor.dialogs == []
    assert visitor.script_urls == []
    assert visitor.visited > 200
