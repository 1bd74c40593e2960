"""URLs of the admin report pages; the host project mounts them under ``admin/insights/``.

``PAGES`` lists what the admin index links to, in order: (url name, title, one-line description).
"""
from django.urls import path

app_name = "rec-admin"

PAGES: list[tuple[str, str, str]] = []

urlpatterns: list = []
