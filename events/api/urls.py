"""The spec's URL shape, bound explicitly: `/ORG/campaign/mcORG/EVTname[/PKey]` (trailing slash optional),
and an event's story at `/ORG/campaign/mcORG/EVTname/PKey/timeline` (events.timeline).

An event's URL answers a POST as it answers a GET: Adobe's Node SDK reads events with a POST
without a body (its OpenAPI document declares the read so).
"""

from django.urls import re_path

from events.api.views import EventViewSet

_BASE = r"^(?P<organization>[^/]+)/campaign/(?P<api_name>[^/]+)/(?P<event_id>[^/]+)"

urlpatterns = [
    re_path(_BASE + r"/?$", EventViewSet.as_view({"get": "list", "post": "create"}), name="event-list"),
    re_path(
        _BASE + r"/(?P<pkey>[^/]+)/?$",
        EventViewSet.as_view({"get": "retrieve", "post": "retrieve"}),
        name="event-detail",
    ),
    re_path(
        _BASE + r"/(?P<pkey>[^/]+)/timeline/?$",
        EventViewSet.as_view({"get": "timeline"}),
        name="event-timeline",
    ),
]
