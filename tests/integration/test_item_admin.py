"""Editing an item in the admin reaches serving and the embedder like an API upsert does."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from recommender.ingestion import do_upsert_items
from recommender.ingestion.items import content_hash
from recommender.models import Item

pytestmark = pytest.mark.django_db


def test_admin_edit_moves_updated_at_and_text_hash(admin_client):
    do_upsert_items([{"item_id": "mug", "title": "Blue mug", "category": "kitchen", "price": "9.50"}])
    Item.objects.filter(external_id="mug").update(updated_at=timezone.now() - timedelta(days=1))
    item = Item.objects.get(external_id="mug")
    before, old_hash = item.updated_at, item.text_hash
    response = admin_client.post(
        f"/admin/recommender/item/{item.pk}/change/",
        {"external_id": "mug", "title": "Red mug", "description": "", "category": "kitchen", "brand": "",
         "price": "7.00", "attributes": "{}", "is_active": "on", "in_stock": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    item.refresh_from_db()
    assert item.title == "Red mug"
    assert item.updated_at > before
    assert item.text_hash != old_hash
    assert item.text_hash == content_hash("Red mug", "", "kitchen", "", item.price)
