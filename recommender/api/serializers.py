"""Serializers that describe request and response bodies in the OpenAPI schema and render reads.

The ingestion endpoints validate with ``recommender.ingestion.validation`` (fast, collects
every error with its index); these classes document the same shapes.
"""
from rest_framework import serializers

from ..conf import EVENT_TYPES
from ..models import Item


class ItemInSerializer(serializers.Serializer):
    item_id = serializers.CharField(max_length=128)
    title = serializers.CharField(max_length=500)
    description = serializers.CharField(required=False, allow_blank=True)
    category = serializers.CharField(required=False, allow_blank=True, max_length=255)
    brand = serializers.CharField(required=False, allow_blank=True, max_length=255)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, required=False, allow_null=True)
    attributes = serializers.DictField(required=False)
    is_active = serializers.BooleanField(required=False, default=True)
    in_stock = serializers.BooleanField(required=False, default=True)


class ItemOutSerializer(serializers.ModelSerializer):
    item_id = serializers.CharField(source="external_id")

    class Meta:
        model = Item
        fields = [
            "item_id", "title", "description", "category", "brand", "price", "attributes",
            "is_active", "in_stock", "is_placeholder", "created_at", "updated_at",
        ]


class EventInSerializer(serializers.Serializer):
    user_id = serializers.CharField(max_length=128)
    item_id = serializers.CharField(max_length=128)
    event_type = serializers.ChoiceField(choices=EVENT_TYPES)
    timestamp = serializers.DateTimeField(help_text="ISO 8601 (UTC when no zone) or unix seconds.")
    value = serializers.FloatField(required=False, allow_null=True)
    query = serializers.CharField(required=False, allow_blank=True, max_length=500)
    request_id = serializers.UUIDField(required=False, allow_null=True)
    event_id = serializers.CharField(
        required=False, allow_null=True, max_length=128, help_text="Idempotency key: a retry stores the event once."
    )


class FieldErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    field = serializers.CharField()
    message = serializers.CharField()


class BatchErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = FieldErrorSerializer(many=True, required=False)


class ItemUpsertResultSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()


class EventIngestResultSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    stored = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="Events skipped because their event_id was already stored.")
    created_users = serializers.IntegerField()
    created_items = serializers.IntegerField(help_text="Placeholder items created for unknown item ids.")


class UserErasedSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    events_deleted = serializers.IntegerField()
