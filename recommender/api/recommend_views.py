"""Recommendation and exposure-report endpoints: parse, call one service, serialize."""
from __future__ import annotations

import math
from functools import update_wrapper
from time import perf_counter
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from typing import Any

import orjson
from django.http import Http404, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from ..conf import EVENT_TYPES
from ..serving import Filters, UnknownItem, recommend_for_session, recommend_for_user, similar_items
from ..reports.queries import exposure_report
from .authentication import APIKeyAuthentication, find_active_key
from .permissions import HasScope
from .renderers import FastJSONRenderer

MAX_K = 100
MAX_SESSION_ITEMS = 100
MAX_ID_LENGTH = 128
FILTER_PARAMS = ("k", "category", "min_price", "max_price", "exclude", "in_stock")
SESSION_EVENT_TYPES = tuple(t for t in EVENT_TYPES if t != "impression")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# --- parsing -----------------------------------------------------------------------------------

def _bad(message: str) -> ValidationError:
    return ValidationError({"detail": message})


def check_id(value: str, what: str) -> str:
    """A shop id: 1 to 128 characters, no control characters (PostgreSQL rejects NUL in text)."""
    if not value or len(value) > MAX_ID_LENGTH:
        raise _bad(f"The {what} must be 1 to {MAX_ID_LENGTH} characters long; send the shop's own id.")
    if any(ord(ch) < 32 for ch in value):
        raise _bad(f"The {what} contains control characters; send the shop's own id.")
    return value


def _check_params(query, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise _bad(
            f"Unknown query parameter(s): {', '.join(unknown)}. Allowed: {', '.join(allowed)}."
        )
    repeated = sorted(name for name in query if name != "exclude" and len(query.getlist(name)) > 1)
    if repeated:
        raise _bad(f"Give each of {', '.join(repeated)} once.")


def _number(query, name: str) -> float | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _bad(f"{name}={raw!r} is not a number; send e.g. {name}=19.99.") from None
    if not math.isfinite(value) or value < 0:
        raise _bad(f"{name}={raw!r} must be a finite number >= 0.")
    return value


def parse_k(query) -> int:
    """``k`` from the query string: an integer in [1, 100], default 10."""
    raw = query.get("k")
    if raw is None:
        return 10
    try:
        k = int(raw)
    except ValueError:
        raise _bad(f"k={raw!r} is not an integer; send k between 1 and {MAX_K}.") from None
    if not 1 <= k <= MAX_K:
        raise _bad(f"k={k} is out of range; send k between 1 and {MAX_K}.")
    return k


def parse_filters(query) -> Filters:
    """The optional filters: category, min_price, max_price, exclude (ids, comma-separated or repeated), in_stock."""
    low, high = _number(query, "min_price"), _number(query, "max_price")
    if low is not None and high is not None and low > high:
        raise _bad(f"min_price ({low:g}) is above max_price ({high:g}); swap them.")
    exclude = tuple(
        part.strip() for raw in query.getlist("exclude") for part in raw.split(",") if part.strip()
    )
    if len(exclude) > 1000:
        raise _bad(f"exclude names {len(exclude)} items; send at most 1000.")
    raw_stock = query.get("in_stock")
    if raw_stock is None or raw_stock == "":
        in_stock = True
    elif raw_stock.lower() in _TRUE:
        in_stock = True
    elif raw_stock.lower() in _FALSE:
        in_stock = False
    else:
        raise _bad(f"in_stock={raw_stock!r}: send true or false.")
    category = query.get("category")
    return Filters(
        category=category if category else None, min_price=low, max_price=high, exclude=exclude, in_stock=in_stock
    )


def _id_list(body: dict, name: str, required: bool) -> list[str] | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _bad(f"'{name}' is missing: send a list of strings.")
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(f"'{name}' must be a list of non-empty strings.")
    if len(value) > MAX_SESSION_ITEMS:
        raise _bad(f"'{name}' has {len(value)} entries; send the last {MAX_SESSION_ITEMS} at most.")
    for v in value:
        check_id(v, f"entry {v[:20]!r} of '{name}'")
    return value


def parse_session(body: Any) -> tuple[list[str], list[str] | None, str | None]:
    """(item_ids, event_types or None, user_id or None) of a session request body."""
    if not isinstance(body, dict):
        raise _bad('The body must be a JSON object like {"item_ids": ["sku-1"], "event_types": ["view"]}.')
    unknown = sorted(set(body) - {"item_ids", "event_types", "user_id"})
    if unknown:
        raise _bad(f"Unknown field(s) {', '.join(unknown)}; allowed: item_ids, event_types, user_id.")
    items = _id_list(body, "item_ids", required=True)
    types = _id_list(body, "event_types", required=False)
    if types is not None:
        if len(types) != len(items):
            raise _bad(
                f"event_types has {len(types)} entries for {len(items)} item_ids; send one per item (or none)."
            )
        bad = sorted(set(types) - set(SESSION_EVENT_TYPES))
        if bad:
            raise _bad(f"Unknown event type(s) {bad}; use {', '.join(SESSION_EVENT_TYPES)}.")
    user_id = body.get("user_id")
    if user_id is not None:
        if not isinstance(user_id, str):
            raise _bad(f"user_id must be a string of 1 to {MAX_ID_LENGTH} characters.")
        check_id(user_id, "user_id")
    return items, types, user_id


# --- schema ------------------------------------------------------------------------------------

_PARAMS = [
    OpenApiParameter("k", int, description=f"List length, 1 to {MAX_K} (default 10)."),
    OpenApiParameter("category", str, description="Only items of this category."),
    OpenApiParameter("min_price", float, description="Only items priced at least this (unknown prices fail)."),
    OpenApiParameter("max_price", float, description="Only items priced at most this."),
    OpenApiParameter("exclude", str, description="Item ids never to return, comma-separated (or repeat the parameter)."),
    OpenApiParameter("in_stock", bool, description="Only items in stock (default true)."),
]

class RecommendedItemSerializer(serializers.Serializer):
    item_id = serializers.CharField()
    title = serializers.CharField()
    score = serializers.FloatField(allow_null=True, help_text="The model's score; null for a pinned item.")
    segment = serializers.ChoiceField(choices=["head", "tail"])
    reasons = serializers.ListField(child=serializers.CharField())


class RecommendationListSerializer(serializers.Serializer):
    request_id = serializers.UUIDField(help_text="Send it with clicks and purchases to attribute them.")
    model_version = serializers.CharField(allow_null=True)
    policy = serializers.CharField()
    variant = serializers.CharField(allow_null=True, help_text="The A/B arm, if an experiment runs.")
    fallback = serializers.DictField(
        child=serializers.CharField(), allow_null=True, help_text="Set when a fallback served: why, and what served."
    )
    items = RecommendedItemSerializer(many=True)


class SessionRequestSerializer(serializers.Serializer):
    item_ids = serializers.ListField(child=serializers.CharField(), help_text="The session's items, oldest first.")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=list(SESSION_EVENT_TYPES)), required=False,
        help_text="One per item (default view).",
    )
    user_id = serializers.CharField(required=False, help_text="The shopper, when known (A/B arm, impressions).")


_LIST = RecommendationListSerializer
_BAD = OpenApiResponse(description="Bad input; `detail` says what to change.")
_SESSION_BODY = SessionRequestSerializer


class TimedView(APIView):
    """Adds ``Server-Timing: view;dur=<ms>``: authentication, parsing, the service and JSON rendering.

    What the server spent, next to what a client observes (which adds the network, the WSGI
    server and any wait for a free worker); the serving benchmark reports both.
    """

    def dispatch(self, request, *args, **kwargs):
        started = perf_counter()
        response = super().dispatch(request, *args, **kwargs)
        if callable(getattr(response, "render", None)):
            response.render()  # inside the measurement; Django does not render twice
        response["Server-Timing"] = f"view;dur={(perf_counter() - started) * 1000:.3f}"
        return response


#: Accept headers that mean "JSON is fine" as clients send them verbatim: the hot endpoints
#: answer these without DRF's media-type parsing.
_JSON_ACCEPTS = frozenset({"", "*/*", "application/json", "application/json, */*", "*/*; q=0.01"})


class RecommendView(TimedView):
    """The hot endpoints: API keys only (the shop's frontend or backend calls them, never a
    browser session) and JSON only.

    A plain request (a valid API key with the scope, an Accept header that takes JSON, and for
    POST a JSON body; no DRF throttles configured) is answered by :meth:`fast`, without DRF:
    no ``Request`` wrapper, authenticator and permission objects, content negotiation or
    ``Response`` rendering.
    Anything else (no key or a bad one, bad input, another Accept header, an error in the
    service) goes through DRF from the start, which answers it as every other endpoint does
    (401, 403, 400 with a ``detail``, 404, 406). Both paths run the same parsing and the same
    service (:meth:`serve`); a failed fast attempt changes nothing (the service writes only
    once it has a list), so answering it again through DRF is a plain retry.
    Measured by bench/serving.py (README, Production).

    Each endpoint defines ``serve(query, body, **url_kwargs) -> Recommendations`` (a classmethod
    that both paths call) and the DRF handler (``get`` or ``post``) for the schema and the rest.
    """

    authentication_classes = [APIKeyAuthentication]
    renderer_classes = [FastJSONRenderer]
    permission_classes = [HasScope]
    required_scope = "recommend"
    _json = FastJSONRenderer()

    @classmethod
    def as_view(cls, **initkwargs):
        drf_view = super().as_view(**initkwargs)

        def view(request, *args, **kwargs):
            started = perf_counter()
            response = cls.fast(request, kwargs)
            if response is None:
                return drf_view(request, *args, **kwargs)
            response["Server-Timing"] = f"view;dur={(perf_counter() - started) * 1000:.3f}"
            return response

        update_wrapper(view, drf_view)  # cls and initkwargs: the OpenAPI schema reads them
        return csrf_exempt(view)  # API keys only, never a session cookie: nothing to forge

    @classmethod
    def fast(cls, request, kwargs) -> HttpResponse | None:
        """The answer to a plain request, or None for DRF to answer."""
        meta = request.META
        if cls.throttle_classes or meta.get("HTTP_ACCEPT", "") not in _JSON_ACCEPTS:
            return None  # a shop's DRF throttles (DEFAULT_THROTTLE_CLASSES) apply through DRF
        key = find_active_key(meta.get("HTTP_AUTHORIZATION", ""))
        if key is None or cls.required_scope not in key.scopes:
            return None
        if request.method == "GET" and hasattr(cls, "get"):
            body = None
        elif request.method == "POST" and hasattr(cls, "post") and request.content_type == "application/json":
            try:
                body = orjson.loads(request.body)
            except Exception:
                return None
        else:
            return None
        try:
            result = cls.serve(request.GET, body, **kwargs)
        except Exception:
            return None
        return cls.answer(result)

    def perform_content_negotiation(self, request, force=False):
        if request.META.get("HTTP_ACCEPT", "") in _JSON_ACCEPTS:
            return self._json, self._json.media_type
        return super().perform_content_negotiation(request, force)  # e.g. 406 for text/html only

    @classmethod
    def answer(cls, result) -> HttpResponse:
        """A list as rendered JSON bytes (both paths; not a DRF ``Response`` that renders later)."""
        return HttpResponse(cls._json.render(result.as_dict()), content_type=cls._json.media_type)


class UserRecommendationsView(RecommendView):
    @classmethod
    def serve(cls, query, body, *, user_id: str):
        check_id(user_id, "user id")
        _check_params(query, FILTER_PARAMS)
        return recommend_for_user(user_id, parse_k(query), parse_filters(query))

    @extend_schema(
        summary="Personalised recommendations for a shopper",
        description="An unknown shopper or one without history gets a fallback list that says so in `fallback`.",
        parameters=_PARAMS, responses={200: _LIST, 400: _BAD},
    )
    def get(self, request, user_id: str):
        return self.answer(self.serve(request.query_params, None, user_id=user_id))


class SimilarItemsView(RecommendView):
    @classmethod
    def serve(cls, query, body, *, item_id: str):
        check_id(item_id, "item id")
        _check_params(query, FILTER_PARAMS)
        k, filters = parse_k(query), parse_filters(query)
        try:
            return similar_items(item_id, k, filters)
        except UnknownItem as exc:
            raise Http404(str(exc)) from None

    @extend_schema(
        summary="Items similar to an item",
        parameters=_PARAMS, responses={200: _LIST, 400: _BAD, 404: OpenApiResponse(description="Unknown item.")},
    )
    def get(self, request, item_id: str):
        return self.answer(self.serve(request.query_params, None, item_id=item_id))


class SessionRecommendationsView(RecommendView):
    @classmethod
    def serve(cls, query, body):
        _check_params(query, FILTER_PARAMS)
        k, filters = parse_k(query), parse_filters(query)
        items, types, user_id = parse_session(body)
        return recommend_for_session(items, types, k, filters, user_id=user_id)

    @extend_schema(
        summary="Recommendations for a session of items",
        parameters=_PARAMS, request=_SESSION_BODY, responses={200: _LIST, 400: _BAD},
    )
    def post(self, request):
        return self.answer(self.serve(request.query_params, request.data))


# --- reports -----------------------------------------------------------------------------------

def _parse_time(query, name: str, default: datetime) -> datetime:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse_datetime(raw)
        if value is None:
            day = parse_date(raw)
            value = None if day is None else datetime(day.year, day.month, day.day)
    except ValueError:
        value = None
    if value is None:
        raise _bad(
            f"{name}={raw!r} is not a date or time; send ISO 8601 like 2026-11-01 or 2026-11-01T00:00:00Z "
            "(URL-encode a '+' offset as %2B)."
        )
    return value if value.tzinfo else value.replace(tzinfo=dt_timezone.utc)


def report_days(query, now: datetime) -> tuple[date, date]:
    """The [first, last) UTC days of a report request: ``from`` rounded down, ``to`` up to whole days.

    The report reads daily count tables, so a time inside a day takes in the whole day.
    """
    end = _parse_time(query, "to", now)
    start = _parse_time(query, "from", end - timedelta(days=7))
    if start >= end:
        raise _bad(f"from ({start.isoformat()}) must be before to ({end.isoformat()}).")
    if end - start > timedelta(days=366):
        raise _bad("The period is longer than a year; ask for at most 366 days at a time.")
    end_utc = end.astimezone(dt_timezone.utc)
    last = end_utc.date() + timedelta(days=0 if end_utc.time() == time.min else 1)
    return start.astimezone(dt_timezone.utc).date(), last


class ExposureReportView(TimedView):
    permission_classes = [HasScope]
    required_scope = "reports"

    @extend_schema(
        summary="Long-tail exposure report",
        description=(
            "Over the UTC days of [from, to): tail share of impressions and of attributed conversions, "
            "catalog coverage, Gini of exposure (and its Lorenz curve), CTR and conversion rate by segment "
            "and by A/B variant. Read from the daily count tables that the `recommender.aggregate_reports` "
            "job fills every 15 minutes, so the figures are whole UTC days (`from` is rounded down, `to` up) "
            "and lag the events by up to one run; `fill_state` says how many of the days are filled."
        ),
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Start (inclusive); default 7 days before `to`."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="End (exclusive); default now."),
        ],
        responses={200: OpenApiTypes.OBJECT, 400: _BAD},
    )
    def get(self, request):
        _check_params(request.query_params, ("from", "to"))
        first, last = report_days(request.query_params, datetime.now(dt_timezone.utc))
        return Response(exposure_report(first, last))
