"""The host project's lazy message middleware: storage made only when a request uses messages."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import RequestFactory

import shop_recs.middleware as mw


def _run(view, cookies=None):
    request = RequestFactory().get("/")
    request.COOKIES.update(cookies or {})
    made = []
    original = mw.default_storage

    def counting(req):
        made.append(req)
        return original(req)

    mw.default_storage = counting
    try:
        handler = SessionMiddleware(mw.LazyMessageMiddleware(lambda req: view(req)))
        response = handler(request)
    finally:
        mw.default_storage = original
    return response, made


def test_a_request_that_never_uses_messages_makes_no_storage_and_sets_no_cookie():
    response, made = _run(lambda request: HttpResponse("ok"))
    assert made == [] and "messages" not in response.cookies


def test_a_message_added_in_one_request_is_shown_in_the_next():
    def add(request):
        messages.success(request, "Policy saved.")
        return HttpResponse("added")

    response, made = _run(add)
    assert len(made) == 1 and "messages" in response.cookies  # stored like the stock middleware does
    shown = []

    def show(request):
        shown.extend(str(m) for m in messages.get_messages(request))
        return HttpResponse("shown")

    response, _ = _run(show, cookies={"messages": response.cookies["messages"].value})
    assert shown == ["Policy saved."]
    assert response.cookies["messages"].value == ""  # read once, then cleared


def test_the_admin_accepts_the_subclass():
    from django.core import checks

    errors = [e for e in checks.run_checks() if e.id.startswith("admin.")]
    assert errors == []
