"""Admin pages of status webhooks (administrators): an organization's endpoints, the secret shown
once at creation, a notice when one is disabled, and each endpoint's delivery log with replay."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from campaign.admin import OrganizationScopedAdmin, organization_of
from events import webhooks
from events.models import WebhookEndpoint, WebhookNotification

LOG_LENGTH = 100


class WebhookEndpointForm(forms.ModelForm):
    class Meta:
        model = WebhookEndpoint
        fields = [
            "url",
            "description",
            "final_statuses",
            "bounces",
            "opens",
            "clicks",
            "unsubscribes",
            "enabled",
        ]

    def clean(self):
        cleaned = super().clean()
        organization = cleaned.get("organization") or getattr(self.instance, "organization", None)
        url = cleaned.get("url")
        if organization is not None and url:
            try:
                webhooks.check_endpoint(organization=organization, url=url, endpoint=self.instance)
            except ValidationError as error:
                self.add_error(None, error)  # a URL's error goes to its field
        if not any(cleaned.get(flag) for flag in webhooks.WANTS.values()):
            raise ValidationError("Choose at least one kind of notification.")
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OrganizationScopedAdmin):
    form = WebhookEndpointForm
    list_display = [
        "url",
        "description",
        "kinds",
        "enabled_shown",
        "failures_in_a_row",
        "log_link",
        "created_at",
    ]
    readonly_fields = ["disabled_at", "disabled_reason", "failures_in_a_row", "created_at", "log_link"]

    def get_fields(self, request, obj=None):
        fields = list(WebhookEndpointForm.Meta.fields)
        if obj is not None:
            fields += self.readonly_fields
        return (["organization"] if request.user.is_superuser else []) + fields

    @admin.display(description="Notifications")
    def kinds(self, endpoint: WebhookEndpoint) -> str:
        labels = dict(WebhookNotification.Kind.choices)
        return ", ".join(labels[kind] for kind, flag in webhooks.WANTS.items() if getattr(endpoint, flag))

    @admin.display(description="Enabled", boolean=True)
    def enabled_shown(self, endpoint: WebhookEndpoint) -> bool:
        return endpoint.enabled

    @admin.display(description="Delivery log")
    def log_link(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.pk is None:
            return "—"
        url = reverse("admin:events_webhookendpoint_log", args=[endpoint.pk])
        return format_html('<a class="delivery-log-link" href="{}">Delivery log</a>', url)

    def save_model(self, request, obj, form, change):
        if not change:
            if obj.organization_id is None:
                obj.organization = organization_of(request)
            secret = webhooks.create_endpoint(endpoint=obj)
            flash.warning(
                request,
                f"Signing secret: {secret} (copy it now: it will not be shown again; receivers verify "
                "the webhook-signature header with it).",
            )
            return
        was_enabled = WebhookEndpoint.objects.filter(pk=obj.pk).values_list("enabled", flat=True).first()
        obj.save()
        if obj.enabled and not was_enabled:
            webhooks.enable(endpoint=obj)

    def _notice_disabled(self, request) -> None:
        for endpoint in webhooks.endpoints_disabled(organization_of(request)):
            flash.error(
                request, f"The webhook endpoint {endpoint.url} is disabled: {endpoint.disabled_reason}"
            )

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET":
            self._notice_disabled(request)
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            endpoint = self.get_object(request, object_id)
            if endpoint is not None and not endpoint.enabled:
                flash.error(request, f"This endpoint is disabled: {endpoint.disabled_reason or 'by hand'}")
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/log/",
                self.admin_site.admin_view(self.log_view),
                name="events_webhookendpoint_log",
            ),
            path(
                "<path:object_id>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="events_webhookendpoint_replay",
            ),
            *super().get_urls(),
        ]

    def _endpoint(self, request, object_id) -> WebhookEndpoint:
        endpoint = self.get_object(request, object_id)  # scoped to the caller's organization
        if endpoint is None:
            raise Http404("No such webhook endpoint.")
        if not self.has_view_permission(request, endpoint):
            raise PermissionDenied
        return endpoint

    def log_view(self, request, object_id):
        endpoint = self._endpoint(request, object_id)
        return TemplateResponse(
            request,
            "admin/events/webhookendpoint/delivery_log.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"Delivery log of {endpoint.url}",
                "endpoint": endpoint,
                "attempts": webhooks.delivery_log(endpoint, limit=LOG_LENGTH),
                "can_replay": self.has_change_permission(request, endpoint),
                "change_url": reverse("admin:events_webhookendpoint_change", args=[endpoint.pk]),
                "replay_url": reverse("admin:events_webhookendpoint_replay", args=[endpoint.pk]),
            },
        )

    def replay_view(self, request, object_id):
        endpoint = self._endpoint(request, object_id)
        if request.method != "POST" or not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        chosen = request.POST.get("notification", "")
        notification = (
            WebhookNotification.objects.filter(endpoint=endpoint, pk=int(chosen)).first()
            if chosen.isdigit()
            else None
        )
        if notification is None:
            raise Http404("No such notification of this endpoint.")
        webhooks.replay(notification=notification)
        flash.success(
            request, f"Notification {notification.webhook_id} will be sent again (same webhook-id)."
        )
        return HttpResponseRedirect(reverse("admin:events_webhookendpoint_log", args=[endpoint.pk]))
