"""URLs of the host project: the admin, the recommender API and its docs, health."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from recommender.api.health import healthz

urlpatterns = [
    # The recommender's report pages live inside the admin's chrome, before the admin's catch-all.
    path("admin/insights/", include("recommender.admin_pages.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("recommender.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
]
