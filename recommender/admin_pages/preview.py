"""The exposure policy's live preview: the change form posts its unsaved values here, and gets both lists back.

The values are read with the admin's own form and inline formsets (so a bad number gets the
message the form would give on save), then handed to :func:`recommender.serving.preview.preview_policy`.
Fields the request does not carry keep their saved values.
"""
from __future__ import annotations

import math
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, JsonResponse, QueryDict
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from ..models import ExposurePolicy, ItemRule
from ..serving.preview import SCALAR_FIELDS, PolicyPreview, PreviewError, preview_policy, sample_users
from .base import staff_page
from .charts import fmt_percent

TEMPLATE = "recommender/admin/policy_preview.html"


@staff_page
@require_POST
def policy_preview(request: HttpRequest) -> JsonResponse:
    """JSON with the preview (or the problems) and its HTML panel, for the change form's script."""
    errors: dict[str, str] = {}
    preview: PolicyPreview | None = None
    user_id = request.POST.get("preview_user", "").strip()
    policy_id, k = _int_param(request.POST, "preview_policy", None, errors), _int_param(request.POST, "preview_k", 10, errors)
    obj = None
    if policy_id is not None:
        obj = ExposurePolicy.objects.filter(pk=policy_id).first()
        if obj is None:
            errors["policy"] = f"No exposure policy with id {policy_id}; it may have been deleted. Reload the page."
    changes: dict[str, Any] = {}
    if not errors:
        changes = read_changes(request, obj, errors)
    if not errors:
        try:
            preview = preview_policy(user_id, policy_id, changes, k=k)
        except PreviewError as exc:
            errors.update(exc.errors)
    context: dict[str, Any] = {"preview": preview, "errors": errors, "user_id": user_id}
    if preview is not None:
        context["sides"] = [(name, side, fmt_percent(side.tail_share))
                            for name, side in (("before", preview.before), ("after", preview.after))]
    if not user_id:
        context["suggestions"] = sample_users()
    html = render_to_string(TEMPLATE, context, request=request)
    body = {"ok": not errors, "errors": errors, "preview": preview.as_dict() if preview else None,
            "suggestions": context.get("suggestions", []), "html": html}
    return JsonResponse(body, status=200 if not errors else 400, json_dumps_params={"default": str})


def _int_param(data: QueryDict, name: str, default: int | None, errors: dict[str, str]) -> int | None:
    raw = data.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        errors[name] = f"{name} must be a whole number; got {raw!r}."
        return default


def read_changes(request: HttpRequest, obj: ExposurePolicy | None, errors: dict[str, str]) -> dict[str, Any]:
    """The edited settings and rules from the posted change form, checked by the admin's form classes."""
    model_admin = admin.site.get_model_admin(ExposurePolicy)
    form_class = model_admin.get_form(request, obj, change=obj is not None)
    unbound = form_class(instance=obj)
    data = QueryDict(mutable=True)
    for name in unbound.fields:  # saved (or default) values first, the posted ones over them
        value = unbound[name].value()
        data[name] = "" if value is None else str(value)
    for name in request.POST:
        data.setlist(name, request.POST.getlist(name))
    form = form_class(data, instance=obj if obj is not None else ExposurePolicy())
    form.is_valid()
    changes: dict[str, Any] = {}
    for name in SCALAR_FIELDS:
        if name not in form.fields:
            continue
        if name in form.errors:
            label = form.fields[name].label or name
            errors[name] = f"{label}: {' '.join(form.errors[name])} (got {data.get(name)!r}); change it to see the preview."
        elif name in request.POST:
            changes[name] = form.cleaned_data[name]
    for formset_class, inline in model_admin.get_formsets_with_inlines(request, obj):
        prefix = formset_class.get_default_prefix()
        if f"{prefix}-TOTAL_FORMS" not in request.POST:
            continue  # the request does not edit these rows: the saved ones stay
        formset = formset_class(
            request.POST, instance=obj if obj is not None else ExposurePolicy(), prefix=prefix,
            queryset=inline.get_queryset(request),
        )
        if not formset.is_valid():
            title = formset_class.model._meta.verbose_name_plural
            for i, form_errors in enumerate(formset.errors):
                for field_name, messages in form_errors.items():
                    where = "" if field_name == "__all__" else f" {field_name}"
                    errors[f"{prefix}-{i}-{field_name}"] = f"{title}, row {i + 1}{where}: {' '.join(messages)}"
            for message in formset.non_form_errors():
                errors[f"{prefix}-all"] = f"{title}: {message}"
            continue
        rows = [f.cleaned_data for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if formset_class.model is ItemRule:
            rules = [r for r in rows if r.get("item") is not None]
            order = sorted(range(len(rules)), key=lambda i: (rules[i].get("position") or 0, i))
            changes["pinned"] = [rules[i]["item"].pk for i in order if rules[i]["action"] == ItemRule.Action.PIN]
            changes["buried"] = [rules[i]["item"].pk for i in order if rules[i]["action"] == ItemRule.Action.BURY]
        else:
            promos = []
            for r in rows:
                if r.get("item") is None and not r.get("category"):
                    continue  # an empty row
                boost = float(r.get("boost") or 0.0)
                if not math.isfinite(boost):
                    errors[f"{prefix}-boost"] = f"A promotion's boost must be a finite number; got {boost}."
                    continue
                item = r.get("item")
                promos.append((boost, item.pk if item else None, "" if item else r.get("category", ""),
                               r.get("starts_at"), r.get("ends_at")))
            changes["promotions"] = promos
    return changes
