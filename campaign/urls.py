"""Routes: the admin (the product's UI), IMS tokens, health, the OpenAPI schema, and the event API;
the 403 page in the admin's look."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from campaign import ims, views
from campaign.metrics import metrics_view
from events import admin_reports
from messages import provider_events, twilio_views
from messages import views as message_views

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "admin/reports/messages/<int:pk>/",
        admin.site.admin_view(admin_reports.message_report),
        name="message-report",
    ),
    path("admin/", admin.site.urls),
    path("ims/token/v3", ims.token, name="ims-token"),
    path("favicon.ico", RedirectView.as_view(url=static("campaign/favicon.svg"), permanent=True)),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("u/<str:token>", message_views.unsubscribe, name="unsubscribe"),
    path("t/o/<str:token>.gif", message_views.tracking_open, name="tracking-open"),
    path("t/c/<str:token>", message_views.tracking_click, name="tracking-click"),
    path("s/<str:code>", message_views.tracking_short_link, name="tracking-short"),
    path("webhooks/twilio/status", twilio_views.twilio_status, name="twilio-status"),
    path("webhooks/twilio/inbound", twilio_views.twilio_inbound, name="twilio-inbound"),
    # An organization's own Twilio provider (messages.models.OrganizationProvider), signed with its token.
    path(
        "webhooks/twilio/<int:provider_id>/status",
        twilio_views.provider_status,
        name="twilio-provider-status",
    ),
    path(
        "webhooks/twilio/<int:provider_id>/inbound",
        twilio_views.provider_inbound,
        name="twilio-provider-inbound",
    ),
    # An email service provider's tracking webhooks (django-anymail), e.g. /anymail/postmark/tracking/.
    # An organization's own ESP account's tracking webhook, with that provider's secrets.
    path(
        "anymail/provider/<int:provider_id>/<slug:esp>/tracking/",
        provider_events.provider_tracking,
        name="anymail-provider-tracking",
    ),
    path("anymail/", include((provider_events.webhook_urlpatterns(), "anymail"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("events.api.urls")),
]

handler403 = views.permission_denied
