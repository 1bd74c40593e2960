from datetime import timedelta

from django.db import models
from django.utils import timezone


class EventType(models.IntegerChoices):
    VIEW = 1, "view"
    SEARCH = 2, "search"
    CLICK = 3, "click"
    ADD_TO_CART = 4, "add_to_cart"
    PURCHASE = 5, "purchase"
    RATING = 6, "rating"
    IMPRESSION = 7, "impression"

    @classmethod
    def by_name(cls) -> dict[str, int]:
        return {label: value for value, label in cls.choices}


class Event(models.Model):
    """One behaviour event of a shopper on an item."""

    id = models.BigAutoField(primary_key=True)
    # No foreign key constraints in the database (migration 0011): checking them cost 40% of
    # writing impressions (1.2-1.5 -> 0.75 ms of PostgreSQL CPU per served list of 20, on 1M
    # events), because each check locks the shopper's and the item's rows. Every writer
    # resolves the ids against those tables in the same statement or transaction, Django
    # still cascades deletes, and the hourly ``sweep_orphan_events`` job deletes the rare row
    # whose shopper or item was deleted while it was being written.
    user = models.ForeignKey(
        "recommender.ShopUser", on_delete=models.CASCADE, db_index=False, db_constraint=False
    )
    item = models.ForeignKey("recommender.Item", on_delete=models.CASCADE, db_index=False, db_constraint=False)
    event_type = models.PositiveSmallIntegerField(choices=EventType.choices)
    value = models.FloatField(null=True, blank=True, help_text="Quantity, rating or dwell seconds.")
    query = models.CharField(max_length=500, blank=True, help_text="Search query text.")
    request_id = models.UUIDField(
        null=True, blank=True, help_text="The recommendation request this event is attributed to."
    )
    timestamp = models.DateTimeField()
    # The client's idempotency key: a retried batch stores each keyed event once.
    event_id = models.CharField(max_length=128, null=True, blank=True)
    ingested_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["event_id"],
                condition=models.Q(event_id__isnull=False),
                name="rec_event_unique_event_id",
            ),
        ]
        # Impressions are most of the rows (one per listed item, written on every request):
        # an index no lookup of impressions needs leaves them out (migration 0007). A query
        # uses such a partial index only when its WHERE clause implies ``event_type <> 7``
        # (``event_type IN (3, 5)`` or ``= 3`` do). Impressions carry no event_id, so the
        # unique event_id index skips them too.
        indexes = [
            # Reports read days of events, impressions included, by time.
            models.Index(fields=["timestamp"], name="rec_event_time"),
            # Kept whole: erasing a shopper (and Django's cascade of any ShopUser delete) must
            # find their impressions.
            models.Index(fields=["user", "timestamp"], name="rec_event_user_time"),
            # A shopper's latest events without impressions, read on every personalised request:
            # the covering columns make it an index-only scan of one or two pages, however many
            # lists the shopper has been shown (measured on 1M events: the history query's p50
            # 0.6-0.8 -> 0.4 ms, p99 2.0 -> 0.9 ms). Impression writes do not maintain it.
            # SQLite (the demo) builds it without the INCLUDE part.
            models.Index(
                fields=["user", "timestamp"],
                include=["item", "event_type"],
                condition=~models.Q(event_type=EventType.IMPRESSION),
                name="rec_event_user_history",
            ),
            # Kept whole for the same reason: without it deleting an Item (Django's cascade to
            # its events; the foreign key check before migration 0011) scans the table once per
            # delete (measured: 94 ms per item at 1M events), which turns deleting items one by
            # one (the admin) into minutes. Leaving impressions out would save ~0.06-0.085 ms of
            # PostgreSQL per list (bench/impressions.py; 0.28 -> 0.19 ms in session 6), but an
            # alternating serving A/B showed no p99 change: not worth slow item deletes.
            models.Index(fields=["item", "timestamp"], name="rec_event_item_time"),
            # The report job finds late events (ingested after their day was aggregated) by this.
            models.Index(fields=["ingested_at"], name="rec_event_ingested"),
            # Attribution looks clicks and purchases up by request; a list's impressions are
            # found through its ServedList row.
            models.Index(
                fields=["request_id"],
                condition=models.Q(request_id__isnull=False) & ~models.Q(event_type=EventType.IMPRESSION),
                name="rec_event_request_noimp",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_event_type_display()} {self.user_id}->{self.item_id} @ {self.timestamp:%Y-%m-%d %H:%M}"


class ImpressionBatch(models.Model):
    """One committed write of impression events: its ``ingested_at`` stamp and how many it added.

    Every writer of impression events (the serving processes' impression log, event ingestion)
    adds one row in the same transaction as the events. Serving processes keep today's
    impression counts current by reading the batches written since their last look (a handful
    of rows) and then only those batches' events, instead of grouping the last minute of
    impression events by stamp every few seconds (100-170 ms bursts of a worker at 110 req/s,
    the serving benchmark's p99). A negative ``events`` records a deletion of impression events
    (an erased shopper): serving processes then recount. The impression log deletes rows older
    than :data:`KEEP_BATCHES`.
    """

    id = models.BigAutoField(primary_key=True)
    ingested_at = models.DateTimeField()
    events = models.IntegerField(help_text="Impression events the write added; negative: it deleted some.")

    #: How long batch rows are kept (serving reads only the last minute or so).
    KEEP_BATCHES = timedelta(days=2)

    class Meta:
        indexes = [models.Index(fields=["ingested_at"], name="rec_impbatch_ingested")]

    def __str__(self) -> str:
        return f"{self.events:+d} impressions @ {self.ingested_at:%Y-%m-%d %H:%M:%S}"
