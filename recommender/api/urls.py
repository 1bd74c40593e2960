from django.urls import path

from . import views

app_name = "recommender-api"

urlpatterns = [
    path("items", views.ItemBatchView.as_view(), name="items"),
    path("items/<str:item_id>", views.ItemDetailView.as_view(), name="item-detail"),
    path("events", views.EventBatchView.as_view(), name="events"),
    path("users/<str:user_id>", views.UserDetailView.as_view(), name="user-detail"),
]
