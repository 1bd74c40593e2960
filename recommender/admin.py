"""Admin registrations: thin views over the same models and services as the API."""
from django.contrib import admin, messages

from .api.apikeys import do_create_api_key, parse_scopes
from .models import APIKey, Event, Item, ModelVersion, ShopUser


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("external_id", "title", "category", "brand", "price", "is_active", "in_stock", "is_placeholder")
    list_filter = ("is_active", "in_stock", "is_placeholder")
    search_fields = ("external_id", "title", "brand", "category")
    readonly_fields = ("text_hash", "created_at", "updated_at", "deleted_at")
    show_full_result_count = False


@admin.register(ShopUser)
class ShopUserAdmin(admin.ModelAdmin):
    list_display = ("external_id", "created_at")
    search_fields = ("external_id",)
    show_full_result_count = False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("timestamp", "event_type", "user", "item", "value", "event_id")
    list_filter = ("event_type",)
    list_select_related = ("user", "item")
    raw_id_fields = ("user", "item")
    show_full_result_count = False
    # Event tables grow to many millions of rows: no COUNT(*) on every page, no date hierarchy.

    def get_search_results(self, request, queryset, search_term):
        if search_term:
            return queryset.filter(user__external_id=search_term) | queryset.filter(
                item__external_id=search_term
            ), False
        return queryset, False

    search_fields = ("user__external_id",)
    search_help_text = "Exact user or item id."


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "scopes", "is_active", "created_at", "last_used_at")
    list_filter = ("is_active",)
    fields = ("name", "scopes", "is_active", "prefix", "created_at", "last_used_at")
    readonly_fields = ("prefix", "created_at", "last_used_at")

    def save_model(self, request, obj, form, change):
        if change:
            obj.scopes = parse_scopes(obj.scopes)
            return super().save_model(request, obj, form, change)
        row, key = do_create_api_key(obj.name, obj.scopes or ["ingest"])
        obj.pk, obj.prefix, obj.key_hash = row.pk, row.prefix, row.key_hash
        messages.warning(request, f"The new API key is {key} — copy it now; it is stored hashed and cannot be shown again.")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "status", "is_active", "created_at", "activated_at")
    list_filter = ("status", "is_active", "kind")
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
