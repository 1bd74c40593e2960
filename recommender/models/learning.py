from django.db import models
from django.utils import timezone


class ItemEmbedding(models.Model):
    """The text embedding of one item, as float32 bytes; redone when the item's text_hash changes."""

    item = models.OneToOneField("recommender.Item", on_delete=models.CASCADE, primary_key=True, related_name="embedding")
    model_name = models.CharField(max_length=200)
    # The Item.text_hash this vector was computed from; a mismatch marks the item dirty.
    source_hash = models.CharField(max_length=64)
    dim = models.PositiveSmallIntegerField()
    vector = models.BinaryField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["model_name", "source_hash"], name="rec_emb_model_hash")]


class TrainingRun(models.Model):
    """One training attempt: its progress and log are shown in the admin while it runs."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        REJECTED = "rejected", "rejected by the quality gate"
        FAILED = "failed"

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=50, default="manual", help_text="manual, schedule, admin, command")
    force_activate = models.BooleanField(default=False)
    params = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0, help_text="0 to 1")
    stage = models.CharField(max_length=100, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    model_version = models.ForeignKey(
        "recommender.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="rec_run_status")]

    def __str__(self) -> str:
        return f"training run {self.pk} ({self.status})"


class InterestSegment(models.Model):
    """A K-means cluster of shoppers' interest vectors, described for merchandisers."""

    model_version = models.ForeignKey("recommender.ModelVersion", on_delete=models.CASCADE, related_name="segments")
    index = models.PositiveSmallIntegerField()
    size = models.PositiveIntegerField()
    label = models.CharField(max_length=200, blank=True)
    top_items = models.JSONField(default=list, help_text="[{item_id, title, count}]")
    top_categories = models.JSONField(default=list)
    top_terms = models.JSONField(default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "index"], name="rec_segment_unique")]
        ordering = ["model_version", "index"]

    def __str__(self) -> str:
        return self.label or f"segment {self.index}"


class UserSegment(models.Model):
    """Which interest segment a shopper belongs to under a model version."""

    model_version = models.ForeignKey("recommender.ModelVersion", on_delete=models.CASCADE)
    user = models.ForeignKey("recommender.ShopUser", on_delete=models.CASCADE)
    segment = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "user"], name="rec_user_segment_unique")]
