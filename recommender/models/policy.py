"""The merchandisers' exposure policy, its promotions and rules, A/B experiments and variants, and served lists."""
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

_SHARE = [MinValueValidator(0.0), MaxValueValidator(1.0)]


class ExposurePolicy(models.Model):
    """How recommendations are re-ranked so long-tail items get fair, measured exposure."""

    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(
        default=False, help_text="Serves every request that no A/B variant claims. One policy at most."
    )
    head_share = models.FloatField(
        default=0.2, validators=_SHARE,
        help_text="The top share of items by interactions over the window is 'head'; the rest, new items included, is 'tail'.",
    )
    head_window_days = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])
    tail_boost = models.FloatField(
        default=0.3, help_text="Added to tail items' scores, in standard deviations of the list's scores."
    )
    min_tail_share = models.FloatField(
        default=0.2, validators=_SHARE, help_text="Every prefix of a list holds at least this share of tail items."
    )
    diversity = models.FloatField(default=0.0, validators=_SHARE, help_text="MMR strength: 0 off, 1 dissimilarity only.")
    exposure_spreading = models.FloatField(
        default=0.5, validators=_SHARE,
        help_text="How strongly the tail's places rotate among tail items, so its exposure reaches many, not a few: "
        "items shown often today give way to close ones shown less, and different shoppers see different tail items. "
        "0 off, 1 strongest. Never changes how many tail items a list holds.",
    )
    exploration_slots = models.PositiveSmallIntegerField(
        default=0, help_text="Positions at the end of each list reserved for never-shown items."
    )
    exclude_purchased = models.BooleanField(default=True)
    daily_impression_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="An item shown this many times today is not recommended again until midnight UTC."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "exposure policies"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="rec_one_default_policy"
            ),
            models.CheckConstraint(
                condition=models.Q(head_share__gte=0, head_share__lte=1), name="rec_policy_head_share"
            ),
            models.CheckConstraint(
                condition=models.Q(min_tail_share__gte=0, min_tail_share__lte=1), name="rec_policy_tail_share"
            ),
            models.CheckConstraint(
                condition=models.Q(diversity__gte=0, diversity__lte=1), name="rec_policy_diversity"
            ),
            models.CheckConstraint(
                condition=models.Q(exposure_spreading__gte=0, exposure_spreading__lte=1),
                name="rec_policy_exposure_spreading",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}{' (default)' if self.is_default else ''}"


class Promotion(models.Model):
    """A time-boxed boost of one item or one category under a policy."""

    policy = models.ForeignKey(ExposurePolicy, on_delete=models.CASCADE, related_name="promotions")
    item = models.ForeignKey("recommender.Item", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    category = models.CharField(max_length=255, blank=True, help_text="Boost every item of this category (or name an item).")
    boost = models.FloatField(default=1.0, help_text="In standard deviations of the list's scores; negative demotes.")
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(item__isnull=False) & models.Q(category=""))
                | (models.Q(item__isnull=True) & ~models.Q(category="")),
                name="rec_promotion_one_target",
                violation_error_message="A promotion targets exactly one of an item or a category.",
            ),
            models.CheckConstraint(
                condition=models.Q(starts_at__isnull=True) | models.Q(ends_at__isnull=True)
                | models.Q(ends_at__gt=models.F("starts_at")),
                name="rec_promotion_window",
                violation_error_message="A promotion must end after it starts.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item_id and f'item {self.item_id}' or self.category} {self.boost:+g}"


class ItemRule(models.Model):
    """A merchandiser's hard rule: pin an item at the top of every list, or never show it."""

    class Action(models.TextChoices):
        PIN = "pin"
        BURY = "bury"

    policy = models.ForeignKey(ExposurePolicy, on_delete=models.CASCADE, related_name="rules")
    item = models.ForeignKey("recommender.Item", on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=10, choices=Action.choices)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order among pins, smallest first.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["policy", "item"], name="rec_rule_unique_item")]
        ordering = ["policy", "action", "position"]

    def __str__(self) -> str:
        return f"{self.action} item {self.item_id}"


class Experiment(models.Model):
    """An A/B experiment: variants with traffic shares, one of them the control; at most one runs at a time.

    Draft -> running -> stopped, only through :mod:`recommender.serving.experiments` (the
    admin's experiment page). While one runs, only its variants serve, with users hashed by
    a salt of the experiment's own, so each experiment reshuffles users. Variants without an
    experiment serve only while none runs (the single implicit experiment of earlier releases).
    """

    class Status(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        STOPPED = "stopped"

    name = models.CharField(max_length=100, unique=True)
    hypothesis = models.TextField(
        blank=True, help_text="What you expect to change and why, e.g. 'a stronger tail boost sells more long-tail items'."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    stopped_at = models.DateTimeField(null=True, blank=True, editable=False)
    winner = models.ForeignKey(
        "ABVariant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False,
        help_text="The variant promoted when the experiment ended.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="running"), name="rec_one_running_experiment",
                violation_error_message="Another experiment is running; stop it first.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def control(self) -> "ABVariant | None":
        return next((v for v in self.variants.all() if v.is_control), None)


class ABVariant(models.Model):
    """One arm of an A/B experiment: a policy (and optionally a model version) for a share of users."""

    # Unique across experiments: served lists and the daily count tables record variants by name.
    name = models.CharField(
        max_length=50, unique=True,
        help_text="Unique across all experiments (reports count by name), e.g. 'spring-boost-control'.",
    )
    experiment = models.ForeignKey(
        Experiment, null=True, blank=True, on_delete=models.CASCADE, related_name="variants",
        help_text="Empty: a stand-alone variant that serves only while no experiment runs.",
    )
    is_control = models.BooleanField(
        default=False, help_text="The baseline the other variants of the experiment are compared with (one per experiment)."
    )
    policy = models.ForeignKey(ExposurePolicy, on_delete=models.PROTECT, related_name="variants")
    model_version = models.ForeignKey(
        "recommender.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Serve this version instead of the active one (empty: the active one).",
    )
    share = models.FloatField(
        default=0.5, validators=_SHARE,
        help_text="Share of users hashed into this arm; users left over get the default policy.",
    )
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "A/B variant"
        constraints = [
            models.CheckConstraint(condition=models.Q(share__gte=0, share__lte=1), name="rec_variant_share"),
            models.UniqueConstraint(
                fields=["experiment"], condition=models.Q(is_control=True), name="rec_one_control_per_experiment",
                violation_error_message="An experiment has one control variant.",
            ),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.share:.0%})"


class ServedList(models.Model):
    """One recommendation list as served: what was shown, to whom, under which arm (for attribution)."""

    request_id = models.UUIDField(primary_key=True)
    served_at = models.DateTimeField(default=timezone.now)
    endpoint = models.CharField(max_length=20)
    user_external_id = models.CharField(max_length=128, blank=True)
    variant = models.CharField(max_length=50, blank=True)
    policy = models.CharField(max_length=100, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    fallback = models.CharField(max_length=100, blank=True)
    items = models.JSONField(default=list, help_text="Item database ids, in list order.")
    # One letter per position, 'h' or 't': the segment at serve time (segments drift daily).
    segments = models.CharField(max_length=100, blank=True)

    class Meta:
        indexes = [models.Index(fields=["served_at"], name="rec_served_time")]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.request_id}"
