"""Answering a run that waits for a signal from its admin page: a form built from the signal's pydantic model.

The form posts to ``<run>/signal/``; the view needs ``signal_workflowrun``, goes through ``engine.signal`` as the
user, and records who answered (``LogEntry`` and an annotation) in the signal's transaction. A payload the model
refuses is shown on the form with nothing written.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any, Literal

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import reverse
from pydantic import BaseModel

from ..models import WorkflowRun, WorkflowStage
from ..models.status import Status
from .common import missing_object_redirect, pretty_json, refuse_nul_bytes

SIGNAL_KEY = "waiting_for_signal"


def waiting_stage(run: WorkflowRun) -> tuple[WorkflowStage, Any] | None:
    """The run's SUSPENDED stage waiting for a signal, with its definition (``None`` if none or undefined)."""
    from ..registry import registry

    for stage in WorkflowStage.objects.filter(run=run, status=Status.SUSPENDED):
        state = stage.suspended_state if isinstance(stage.suspended_state, dict) else {}
        if state.get(SIGNAL_KEY):
            workflow = registry.get(run.workflow_id)
            if workflow is not None and workflow.has_stage(stage.stage_id):
                return stage, workflow.stage(stage.stage_id)
    return None


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _form_field(annotation: Any, info: Any) -> tuple[forms.Field, bool]:
    """A Django form field for one pydantic field; ``True`` when its value is JSON text to decode."""
    inner, optional = _unwrap_optional(annotation)
    required = info.is_required() and not optional
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    common: dict[str, Any] = {"required": required, "help_text": info.description or ""}
    if info.title:
        common["label"] = info.title
    if inner is bool:
        return forms.BooleanField(**{**common, "required": False}), False
    if inner is int:
        return forms.IntegerField(**common), False
    if inner is float:
        return forms.FloatField(**common), False
    if inner is str:
        widget = forms.Textarea(attrs={"rows": 4}) if extra.get("multiline") else None
        return forms.CharField(**common, widget=widget, strip=False), False
    choices: list[Any] = []
    if typing.get_origin(inner) is Literal:
        choices = list(typing.get_args(inner))
    elif isinstance(inner, type) and issubclass(inner, enum.Enum):
        choices = [m.value for m in inner]
    if choices:
        blank = [("", "---------")] if not required else []
        return forms.TypedChoiceField(
            **common,
            choices=blank + [(str(c), str(c)) for c in choices],
            coerce=lambda v, c=tuple(choices): next(x for x in c if str(x) == v),
            empty_value=None,
        ), False
    # Nested models, lists, dicts: a JSON field.
    common["help_text"] = f"{common['help_text']} (JSON)".strip()
    return forms.CharField(**common, widget=forms.Textarea(attrs={"rows": 4})), True


class SignalForm(forms.Form):
    """Built by :func:`signal_form` for one pydantic model; ``payload()`` gives what the form's fields hold."""

    json_fields: frozenset[str] = frozenset()

    def payload(self) -> dict[str, Any]:
        data = {}
        for name, value in self.cleaned_data.items():
            if value in (None, "") and not self.fields[name].required:
                continue
            data[name] = json.loads(value) if name in self.json_fields else value
        return data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in self.json_fields:
            value = cleaned.get(name)
            if value:
                try:
                    json.loads(value)
                except ValueError as exc:
                    self.add_error(name, f"Not valid JSON: {exc}")
        return cleaned


def signal_form(model: type[BaseModel] | None, data: Any = None) -> SignalForm:
    fields: dict[str, forms.Field] = {}
    json_fields = set()
    for name, info in (model.model_fields if model is not None else {}).items():
        field, is_json = _form_field(info.annotation, info)
        if info.default is not None and not info.is_required() and not isinstance(info.default, BaseModel):
            default = info.default.value if isinstance(info.default, enum.Enum) else info.default
            field.initial = json.dumps(default) if is_json else default
        fields[name] = field
        if is_json:
            json_fields.add(name)
    if model is None:
        fields["payload"] = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), help_text="JSON")
        json_fields.add("payload")
    cls = type("SignalForm", (SignalForm,), {**fields, "json_fields": frozenset(json_fields)})
    return cls(data, prefix="signal")


def page_context(request: HttpRequest, modeladmin: Any, run: WorkflowRun) -> dict[str, Any]:
    """The run page's signal block: what the stage waits for, what ``prepare`` stored, and the form."""
    if run.status != Status.RUNNING:
        return {}
    found = waiting_stage(run)
    if found is None:
        return {}
    stage, stage_def = found
    state = stage.suspended_state or {}
    prepared = state.get("prepared")
    return {
        "signal": {
            "name": state.get(SIGNAL_KEY),
            "stage": stage,
            "prepared_json": pretty_json(prepared) if prepared is not None else None,
            "can_answer": modeladmin.has_signal_permission(request, run),
            "url": reverse(f"admin:{run._meta.app_label}_workflowrun_signal", args=[run.pk]),
        },
        "signal_form": signal_form(stage_def.output),
        "refresh_seconds": None,  # a form being filled in must not be reloaded away
    }


def signal_run_view(modeladmin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    from .. import engine
    from ..core.errors import InvalidInput, WorkflowEngineError

    refuse_nul_bytes(request, object_id)
    if not (modeladmin.has_view_permission(request) and modeladmin.has_signal_permission(request)):
        raise PermissionDenied
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    run = WorkflowRun.objects.filter(pk=object_id).first()
    if run is None:
        return missing_object_redirect(modeladmin, request, object_id)
    found = waiting_stage(run)
    run_url = reverse(f"admin:{run._meta.app_label}_workflowrun_change", args=[run.pk])
    if found is None or run.status != Status.RUNNING:
        modeladmin.message_user(request, "This run no longer waits for a signal.", messages.WARNING)
        return HttpResponseRedirect(run_url)
    stage, stage_def = found
    name = str((stage.suspended_state or {})[SIGNAL_KEY])
    form = signal_form(stage_def.output, request.POST)
    if form.is_valid():
        user = request.user.get_username()
        try:
            with transaction.atomic():
                result = engine.signal(run.pk, name, form.payload(), actor=user)
                engine.annotate(
                    run.pk,
                    {f"signal.{name}": {"answered_by": user, "signal_id": result.signal_id}},
                    actor={"kind": "user", "id": user},
                    scope="stage",
                    scope_id=stage.stage_id,
                    emit_event=False,
                )
                modeladmin.log_change(request, run, f"Answered signal {name!r} of stage {stage.stage_id!r}.")
        except InvalidInput as exc:
            for error in exc.errors:
                loc = error.get("loc") or ()
                field = str(loc[0]) if loc and str(loc[0]) in form.fields else None
                form.add_error(field, error.get("msg", "invalid"))
            if not exc.errors:
                form.add_error(None, str(exc))
        except WorkflowEngineError as exc:
            modeladmin.message_user(request, f"Could not deliver the signal: {exc}", messages.ERROR)
            return HttpResponseRedirect(run_url)
        else:
            modeladmin.message_user(request, f"Signal {name!r} delivered; the run goes on.", messages.SUCCESS)
            return HttpResponseRedirect(run_url)
    return modeladmin.change_view(request, str(run.pk), extra_context={"signal_form": form})
