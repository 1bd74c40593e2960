from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from recommender.api.apikeys import do_create_api_key


@pytest.fixture
def api_key(db) -> str:
    _, key = do_create_api_key("tests", "ingest,recommend,reports")
    return key


@pytest.fixture
def client_for(db):
    """An API client authenticated with a fresh key of the given scopes."""

    def make(scopes: str = "ingest,recommend,reports") -> APIClient:
        _, key = do_create_api_key(f"tests-{scopes}", scopes)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make


@pytest.fixture
def api(client_for) -> APIClient:
    return client_for("ingest,recommend,reports")


# Fixtures of the serving tests (a fixed clock, fast refresh settings), shared by every module.
from .serving_data import clock, model, serving_settings  # noqa: E402,F401
