"""Ingestion endpoints: validate, call one service function, serialize."""
from dataclasses import asdict

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from ..ingestion import do_ingest_events, do_upsert_items
from ..ingestion.events import do_erase_user
from ..ingestion.items import do_delete_item
from ..models import Item
from ..tasks import queue_embedding_after_commit
from . import serializers as s
from .permissions import HasScope

BAD_BATCH = OpenApiResponse(s.BatchErrorSerializer, description="The batch was rejected whole; nothing was written.")


class ScopedView(APIView):
    permission_classes = [HasScope]
    required_scope = "ingest"


class ItemBatchView(ScopedView):
    @extend_schema(
        summary="Upsert a batch of items (up to 5,000)",
        request=s.ItemInSerializer(many=True),
        responses={200: s.ItemUpsertResultSerializer, 400: BAD_BATCH},
    )
    def post(self, request):
        result = do_upsert_items(request.data)
        queue_embedding_after_commit()
        return Response(asdict(result))


class ItemDetailView(ScopedView):
    def _get(self, item_id: str) -> Item:
        item = Item.objects.live().filter(external_id=item_id).first()
        if item is None:
            raise Http404(f"No item with id {item_id!r}.")
        return item

    @extend_schema(summary="Read one item", responses={200: s.ItemOutSerializer})
    def get(self, request, item_id: str):
        return Response(s.ItemOutSerializer(self._get(item_id)).data)

    @extend_schema(
        summary="Remove an item from the catalog",
        description="It is never recommended again; its past events stay for learning. "
        "Upserting the same id brings it back.",
        responses={204: None},
    )
    def delete(self, request, item_id: str):
        if not do_delete_item(item_id):
            raise Http404(f"No item with id {item_id!r}.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class EventBatchView(ScopedView):
    @extend_schema(
        summary="Ingest a batch of behaviour events (up to 10,000)",
        request=s.EventInSerializer(many=True),
        responses={200: s.EventIngestResultSerializer, 400: BAD_BATCH},
    )
    def post(self, request):
        result = do_ingest_events(request.data)
        return Response(asdict(result))


class UserDetailView(ScopedView):
    @extend_schema(
        summary="Erase a shopper and all their events (privacy request)",
        responses={200: s.UserErasedSerializer},
    )
    def delete(self, request, user_id: str):
        deleted = do_erase_user(user_id)
        if deleted is None:
            raise Http404(f"No user with id {user_id!r}.")
        return Response({"user_id": user_id, "events_deleted": deleted})
