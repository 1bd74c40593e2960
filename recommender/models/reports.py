"""Pre-aggregated report tables: daily counts per item, and the per-day fill state of the job that writes them."""
from django.db import models


class Segment(models.TextChoices):
    HEAD = "head"
    TAIL = "tail"


class DailyItemCount(models.Model):
    """Events of one UTC day on one item, split by segment, A/B variant and attribution.

    Written only by :func:`recommender.reports.aggregation.do_aggregate_day`, which replaces a
    whole day at a time; reports read this table, never raw events.
    """

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    item = models.ForeignKey("recommender.Item", on_delete=models.CASCADE, db_index=False, related_name="+")
    # The item's segment as of the start of that day (head_mask over the default policy's window).
    segment = models.CharField(max_length=4, choices=Segment.choices)
    variant = models.CharField(
        max_length=50, null=True, blank=True, help_text="A/B variant of the list the events came from; empty: none."
    )
    attributed = models.BooleanField(
        help_text="The events carry the request_id of a served list that showed this item; "
        "otherwise they happened outside recommendations."
    )
    impressions = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    add_to_carts = models.PositiveIntegerField(default=0)
    purchases = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(
        max_digits=18, decimal_places=2, default=0,
        help_text="Purchase quantity x item price, where the price is known.",
    )

    class Meta:
        constraints = [
            # Two partial constraints instead of NULLS NOT DISTINCT, which SQLite lacks.
            models.UniqueConstraint(
                fields=["day", "item", "variant", "attributed"],
                condition=models.Q(variant__isnull=False),
                name="rec_dailycount_unique_variant",
            ),
            models.UniqueConstraint(
                fields=["day", "item", "attributed"],
                condition=models.Q(variant__isnull=True),
                name="rec_dailycount_unique_none",
            ),
        ]
        indexes = [
            models.Index(fields=["day", "segment"], name="rec_dailycount_day"),
            models.Index(fields=["item", "day"], name="rec_dailycount_item"),
        ]

    def __str__(self) -> str:
        return f"{self.day} item {self.item_id} {self.segment} {self.variant or '-'}: {self.impressions} imp"


class DailySegmentCount(models.Model):
    """The day's :class:`DailyItemCount` rows summed per segment, variant and attribution.

    A few rows per day, written in the same transaction as the item rows, so that totals over
    months (tail shares, rates per variant) never scan item rows.
    """

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    segment = models.CharField(max_length=4, choices=Segment.choices)
    variant = models.CharField(max_length=50, null=True, blank=True)
    attributed = models.BooleanField()
    impressions = models.PositiveBigIntegerField(default=0)
    clicks = models.PositiveBigIntegerField(default=0)
    add_to_carts = models.PositiveBigIntegerField(default=0)
    purchases = models.PositiveBigIntegerField(default=0)
    revenue = models.DecimalField(max_digits=18, decimal_places=2, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "segment", "variant", "attributed"],
                condition=models.Q(variant__isnull=False),
                name="rec_daysegment_unique_variant",
            ),
            models.UniqueConstraint(
                fields=["day", "segment", "attributed"],
                condition=models.Q(variant__isnull=True),
                name="rec_daysegment_unique_none",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.segment} {self.variant or '-'}: {self.impressions} imp"


class ReportDay(models.Model):
    """Fill state of one UTC day of :class:`DailyItemCount`: the aggregation job's checkpoint."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending (never filled, or re-opened by late events)"
        PARTIAL = "partial", "partial (filled while the day was still running)"
        FILLED = "filled"

    day = models.DateField(primary_key=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    filled_at = models.DateTimeField(null=True, blank=True)
    # Events of this day ingested after this instant have not been counted yet (late events).
    covered_until = models.DateTimeField(null=True, blank=True)
    last_ingested_at = models.DateTimeField(
        null=True, blank=True, help_text="Newest ingested_at among the events counted."
    )
    events = models.PositiveIntegerField(default=0, help_text="Raw events read by the last fill.")
    rows = models.PositiveIntegerField(default=0, help_text="Count rows written by the last fill.")
    # Per-list figures of the day (lists are not per item, so they live with the day).
    lists_served = models.PositiveIntegerField(default=0)
    fallback_lists = models.PositiveIntegerField(default=0, help_text="Lists served by a fallback.")
    # Distinct items with an impression that day: a per-day figure no sum over the item rows of a
    # range can give, stored so that coverage per day never reads item rows. NULL: filled before
    # the column existed (the aggregation job backfills it from the day's item rows).
    items_shown = models.PositiveIntegerField(
        null=True, blank=True, help_text="Distinct items with at least one impression that day."
    )

    class Meta:
        ordering = ["day"]
        indexes = [models.Index(fields=["status", "day"], name="rec_reportday_status")]

    def __str__(self) -> str:
        return f"{self.day} {self.status}"


class DailyVariantUser(models.Model):
    """One shopper's recommendation events of one UTC day under one A/B variant (the unit of an experiment).

    Written by :func:`recommender.reports.aggregation.do_aggregate_day` in the same transaction
    as :class:`DailyItemCount`, from the same attributed events: the user is the one the list
    was served to (the one hashed into the variant). Experiment reports read distinct users,
    per-user rates and revenue per user from here, never from raw events.
    """

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    variant = models.CharField(max_length=50)
    user_external_id = models.CharField(max_length=128)
    impressions = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    add_to_carts = models.PositiveIntegerField(default=0)
    purchases = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=18, decimal_places=2, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "variant", "user_external_id"], name="rec_variantuser_unique"),
        ]
        indexes = [models.Index(fields=["variant", "day"], name="rec_variantuser_variant_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.variant} {self.user_external_id}: {self.impressions} imp"


class WeeklyItemCount(models.Model):
    """One item's :class:`DailyItemCount` rows of one week (Monday to Sunday, UTC) summed into the figures
    the exposure report needs per item, so a 90-day report reads ~13 weeks of item rows, not 90 days of
    (item, variant, attribution) rows.

    Rebuilt whole by :func:`recommender.reports.aggregation.do_aggregate_day`, in the same
    transaction as the day's item rows, every time a day of the week is filled; so it always
    equals the sum of the week's item rows. Reports read a range's whole weeks from here and
    its days at either end from :class:`DailyItemCount`.
    """

    id = models.BigAutoField(primary_key=True)
    week = models.DateField(help_text="Monday of the week (UTC).")
    item = models.ForeignKey("recommender.Item", on_delete=models.CASCADE, db_index=False, related_name="+")
    impressions = models.PositiveBigIntegerField(default=0)
    tail_impressions = models.PositiveBigIntegerField(default=0, help_text="On days the item was tail.")
    # Of recommendation lists (attributed rows) only, as the report's rates are.
    clicks = models.PositiveBigIntegerField(default=0)
    add_to_carts = models.PositiveBigIntegerField(default=0)
    purchases = models.PositiveBigIntegerField(default=0)
    revenue = models.DecimalField(max_digits=18, decimal_places=2, default=0, help_text="Every purchase.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["week", "item"], name="rec_weekitem_unique")]

    def __str__(self) -> str:
        return f"week of {self.week} item {self.item_id}: {self.impressions} imp"
