"""URLs of the admin report pages; the host project mounts them under ``admin/insights/``.

``PAGES`` lists what the admin index links to, in order: (url name, title, one-line description).
"""
from django.urls import path

from . import behaviour, exposure
from . import models_page, preview
from . import experiments

app_name = "rec-admin"

PAGES: list[tuple[str, str, str]] = [
    ("exposure", "Long-tail exposure",
     "Tail share of impressions and conversions over time, catalog coverage, Gini and Lorenz curve, "
     "items never shown, categories, promotions."),
    ("behaviour", "Behaviour analysis",
     "Events by type, the view -> cart -> purchase funnel, active shoppers, popularity and the head/tail cut, "
     "repeat purchases, interest segments."),
    ("models", "Models",
     "Model versions with their offline metrics side by side, training runs with progress and log; "
     "retrain now, activate, roll back."),
    ("experiments", "A/B experiments",
     "Variants of each experiment side by side: tail share, CTR, add-to-cart and conversion with 95% intervals, "
     "tests against the control, revenue per user; start, stop, promote the winner."),
]

urlpatterns: list = [
    path("experiments/", experiments.experiments_page, name="experiments"),
    path("experiments/<int:pk>/", experiments.experiment_page, name="experiment"),
    path("exposure/", exposure.exposure_page, name="exposure"),
    path("behaviour/", behaviour.behaviour_page, name="behaviour"),
    path("models/", models_page.models_view, name="models"),
    path("policy-preview/", preview.policy_preview, name="policy-preview"),
]
