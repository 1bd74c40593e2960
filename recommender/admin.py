"""Admin registrations: thin views over the same models and services as the API."""
from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from .api.apikeys import do_create_api_key, parse_scopes
from .ingestion.items import content_hash
from .models.apikeys import SCOPES
from .models import APIKey, Event, InterestSegment, Item, ModelVersion, ShopUser, TrainingRun

# The index with the Insights links; named by the site, not by shadowing admin/index.html,
# which only works when this app comes before django.contrib.admin in INSTALLED_APPS.
admin.site.index_template = "recommender/admin/index.html"


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("external_id", "title", "category", "brand", "price", "is_active", "in_stock", "is_placeholder")
    list_filter = ("is_active", "in_stock", "is_placeholder")
    search_fields = ("external_id", "title", "brand", "category")
    readonly_fields = ("text_hash", "created_at", "updated_at", "deleted_at")
    show_full_result_count = False

    def save_model(self, request, obj, form, change):
        # Serving refreshes items by updated_at (set by every ingestion path, not auto_now):
        # an edit here must move it too, or price/stock/active changes would not reach serving.
        obj.updated_at = timezone.now()
        # The same content hash as the API's upsert, so a title edit here is re-embedded too.
        obj.text_hash = content_hash(obj.title, obj.description, obj.category, obj.brand, obj.price)
        super().save_model(request, obj, form, change)


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


class APIKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in SCOPES], widget=forms.CheckboxSelectMultiple,
        help_text="ingest: catalog and events; recommend: recommendations; reports: exposure reports.",
    )

    class Meta:
        model = APIKey
        fields = ("name", "scopes", "is_active")


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    form = APIKeyForm
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
    list_display = ("name", "kind", "status", "is_active", "validation_ndcg", "created_at", "activated_at")
    list_filter = ("status", "is_active", "kind")
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    actions = ["activate_selected"]

    @admin.display(description="validation NDCG@10")
    def validation_ndcg(self, obj):
        value = (obj.metrics or {}).get("validation", {}).get("NDCG@10")
        return "-" if value is None else f"{value:.4f}"

    @admin.action(description="Activate the selected version (roll back or forward)")
    def activate_selected(self, request, queryset):
        from .training.pipeline import do_activate

        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = queryset.get()
        if version.status not in (ModelVersion.Status.READY, ModelVersion.Status.REJECTED):
            self.message_user(request, f"{version.name} is {version.status}; only finished versions can serve.", messages.ERROR)
            return
        do_activate(version)
        self.message_user(request, f"{version.name} is now the active model.")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("pk", "status", "stage", "progress_percent", "trigger", "model_version", "created_at", "finished_at")
    list_filter = ("status", "trigger")
    readonly_fields = [f.name for f in TrainingRun._meta.fields if f.name != "force_activate"]
    actions = ["retrain_now"]

    @admin.display(description="progress")
    def progress_percent(self, obj):
        return f"{obj.progress:.0%}"

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retrain now (queue a new training run)")
    def retrain_now(self, request, queryset):
        from .tasks import train_model
        from .training.pipeline import do_queue_training

        run = do_queue_training("admin")
        try:
            train_model.delay(run.pk)
        except Exception as exc:  # broker down: say so instead of a 500
            self.message_user(request, f"Could not queue the run: {exc}", messages.ERROR)
            return
        self.message_user(request, f"Queued training run {run.pk}; refresh this page to follow its progress.")


@admin.register(InterestSegment)
class InterestSegmentAdmin(admin.ModelAdmin):
    list_display = ("model_version", "index", "label", "size")
    list_filter = ("model_version",)
    readonly_fields = [f.name for f in InterestSegment._meta.fields]


# --- Exposure policy, merchandising rules and the A/B experiment (serving) ----------------------
from .models import ABVariant, Experiment, ExposurePolicy, ItemRule, Promotion, ServedList  # noqa: E402


class PromotionInline(admin.TabularInline):
    model = Promotion
    extra = 0
    raw_id_fields = ("item",)
    fields = ("item", "category", "boost", "starts_at", "ends_at")


class ItemRuleInline(admin.TabularInline):
    model = ItemRule
    extra = 0
    raw_id_fields = ("item",)
    fields = ("item", "action", "position")


@admin.register(ExposurePolicy)
class ExposurePolicyAdmin(admin.ModelAdmin):
    """Edits reach every serving process within a few seconds; no restart is needed."""

    list_display = (
        "name", "is_default", "head_share", "head_window_days", "tail_boost", "min_tail_share", "diversity",
        "exposure_spreading", "exploration_slots", "daily_impression_cap", "updated_at",
    )
    list_editable = ("tail_boost", "min_tail_share", "exposure_spreading")
    inlines = [PromotionInline, ItemRuleInline]
    readonly_fields = ("updated_at",)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Inline edits change their own rows' updated_at; touching the policy too keeps its
        # "updated at" column honest for whoever reads the list.
        form.instance.save(update_fields=["updated_at"])


@admin.register(ABVariant)
class ABVariantAdmin(admin.ModelAdmin):
    list_display = ("name", "experiment", "is_control", "policy", "model_version", "share", "is_active", "updated_at")
    list_editable = ("share", "is_active")
    list_filter = ("is_active", "experiment")
    raw_id_fields = ("model_version",)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.experiment_id and obj.experiment.status != Experiment.Status.DRAFT:
            # An arm of a running or finished experiment: edits would mix splits in its report.
            return [f.name for f in ABVariant._meta.fields]
        return super().get_readonly_fields(request, obj)


class ExperimentVariantFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        # Per-form validation cannot see the (experiment, is_control) constraint across forms.
        controls = [
            f.cleaned_data.get("name") for f in self.forms
            if getattr(f, "cleaned_data", None) and f.cleaned_data.get("is_control") and not f.cleaned_data.get("DELETE")
        ]
        if len(controls) > 1:
            raise forms.ValidationError(
                f"An experiment has one control variant; untick 'is control' on all but one of {', '.join(controls)}."
            )


class ExperimentVariantInline(admin.TabularInline):
    model = ABVariant
    formset = ExperimentVariantFormSet
    extra = 2
    raw_id_fields = ("model_version",)
    fields = ("name", "is_control", "policy", "model_version", "share", "is_active")


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    """Defines experiments and their variants; start, stop and promote live on the experiment's insights page."""

    list_display = ("name", "status", "started_at", "stopped_at", "winner", "report_link")
    list_filter = ("status",)
    search_fields = ("name",)
    fields = ("name", "hypothesis", "status", "started_at", "stopped_at", "winner", "report_link")
    readonly_fields = ("status", "started_at", "stopped_at", "winner", "report_link")
    inlines = [ExperimentVariantInline]

    @admin.display(description="report and actions")
    def report_link(self, obj):
        from django.urls import reverse
        from django.utils.html import format_html

        if obj.pk is None:
            return "Save first; then start it from its report page."
        return format_html('<a href="{}">Open the experiment page</a>', reverse("rec-admin:experiment", args=[obj.pk]))

    def get_inline_instances(self, request, obj=None):
        inlines = super().get_inline_instances(request, obj)
        if obj is not None and obj.status != Experiment.Status.DRAFT:
            # Changing arms mid-run (or after) would mix users of different splits in one report.
            for inline in inlines:
                inline.has_add_permission = lambda *a, **k: False
                inline.has_delete_permission = lambda *a, **k: False
                inline.readonly_fields = inline.fields
        return inlines


@admin.register(ServedList)
class ServedListAdmin(admin.ModelAdmin):
    list_display = ("served_at", "endpoint", "user_external_id", "variant", "policy", "model_version", "fallback")
    list_filter = ("endpoint", "variant")
    search_fields = ("=user_external_id",)
    readonly_fields = [f.name for f in ServedList._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False
