from django.urls import path

from . import views

app_name = "recommender-api"

urlpatterns = [
    path("items", views.ItemBatchView.as_view(), name="items"),
    path("items/<str:item_id>", views.ItemDetailView.as_view(), name="item-detail"),
    path("events", views.EventBatchView.as_view(), name="events"),
    path("users/<str:user_id>", views.UserDetailView.as_view(), name="user-detail"),
]

# Recommendations and exposure reports (recommend_views.py).
from . import recommend_views  # noqa: E402

urlpatterns += [
    path("recommendations/users/<str:user_id>", recommend_views.UserRecommendationsView.as_view(), name="recommend-user"),
    path(
        "recommendations/items/<str:item_id>/similar",
        recommend_views.SimilarItemsView.as_view(),
        name="recommend-similar",
    ),
    path("recommendations/session", recommend_views.SessionRecommendationsView.as_view(), name="recommend-session"),
    path("reports/exposure", recommend_views.ExposureReportView.as_view(), name="report-exposure"),
]
