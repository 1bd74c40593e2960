from django.db import models
from django.utils import timezone

from ..managers import ItemQuerySet


class Item(models.Model):
    """A product of the shop, keyed by the shop's own id."""

    external_id = models.CharField(max_length=128, unique=True, help_text="The shop's own item id.")
    title = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=255, blank=True)
    brand = models.CharField(max_length=255, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True, help_text="Inactive items are never recommended.")
    in_stock = models.BooleanField(default=True)
    is_placeholder = models.BooleanField(
        default=False,
        help_text="Created because an event named it before the catalog did; its text comes later.",
    )
    # sha256 of the text that is embedded; a change tells the embedding job to redo this item.
    text_hash = models.CharField(max_length=64, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = ItemQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["category"], name="rec_item_category"),
            models.Index(fields=["created_at"], name="rec_item_created"),
            models.Index(fields=["text_hash"], name="rec_item_text_hash"),
            # Serving processes read the items changed since their last look every minute
            # (serving.catalog.read_item_changes): without it, a scan of the whole table each
            # time in every worker (13-20 ms of database CPU at 100k items).
            models.Index(fields=["updated_at"], name="rec_item_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id}: {self.title or '(no title yet)'}"


class ShopUser(models.Model):
    """A shopper, known only by the shop's own id: no other personal data is stored."""

    external_id = models.CharField(max_length=128, unique=True, help_text="The shop's own user id.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "shop user"

    def __str__(self) -> str:
        return self.external_id
