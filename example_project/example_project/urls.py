"""URLs of the example site: the admin is the UI (runs, stages, logs, costs)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
