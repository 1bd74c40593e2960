"""Named read queries on the app's models."""
from django.db import models


class ItemQuerySet(models.QuerySet):
    def live(self) -> "ItemQuerySet":
        """Items that exist in the catalog (not deleted)."""
        return self.filter(deleted_at__isnull=True)

    def eligible(self) -> "ItemQuerySet":
        """Items that may be recommended: live, active and in stock."""
        return self.live().filter(is_active=True, in_stock=True)
