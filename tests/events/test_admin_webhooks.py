"""The webhook endpoints' admin pages (events.admin_webhooks): administrators only, scoped to
their organization, the secret shown once, form errors for refused targets and bounds, a notice
when an endpoint is disabled, the delivery log and its replay button."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from campaign.roles import ADMINISTRATORS
from events import webhooks
from events.models import WebhookAttempt, WebhookEndpoint, WebhookNotification
from tests.factories import member

pytestmark = pytest.mark.django_db
ADD = reverse("admin:events_webhookendpoint_add")
LIST = reverse("admin:events_webhookendpoint_changelist")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def form(url: str, **flags) -> dict[str, str]:
    data = {"url": url, "description": "CRM", "final_statuses": "on", "enabled": "on"}
    data.update({k: "on" for k, v in flags.items() if v})
    return data


def an_endpoint(organization, url="https://hooks.example.com/in") -> WebhookEndpoint:
    endpoint = WebhookEndpoint(organization=organization, url=url)
    webhooks.create_endpoint(endpoint=endpoint)
    return endpoint


def test_an_administrator_adds_an_endpoint_and_sees_its_secret_once(
    client, administrator, organization, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    client.force_login(administrator)
    response = client.post(ADD, form("http://127.0.0.1:8080/hooks", opens=True))
    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.organization == organization and endpoint.final_statuses and endpoint.opens
    [shown] = [str(m) for m in get_messages(response.wsgi_request) if "Signing secret" in str(m)]
    secret = shown.split("Signing secret: ", 1)[1].split(" ", 1)[0]
    assert webhooks.secret_of(endpoint) == secret
    change = reverse("admin:events_webhookendpoint_change", args=[endpoint.pk])
    assert secret in client.get(change).content.decode()  # the page the add leads to: once
    page = client.get(change).content.decode()
    assert secret not in page and secret[6:] not in page
    assert secret not in client.get(LIST).content.decode()


def test_a_private_target_is_a_form_error(client, administrator, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    client.force_login(administrator)
    response = client.post(ADD, form("http://169.254.169.254/latest"))
    assert response.status_code == 200
    assert "private, loopback or link-local" in str(response.context["adminform"].form.errors["url"])
    assert not WebhookEndpoint.objects.exists()


def test_an_endpoint_must_want_something(client, administrator, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    client.force_login(administrator)
    data = form("http://127.0.0.1:8080/hooks")
    del data["final_statuses"]
    response = client.post(ADD, data)
    assert "at least one kind" in str(response.context["adminform"].form.errors)


def test_the_number_of_endpoints_is_bounded(client, administrator, organization, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS, settings.WEBHOOK_MAX_ENDPOINTS = True, 2
    an_endpoint(organization), an_endpoint(organization)
    client.force_login(administrator)
    response = client.post(ADD, form("http://127.0.0.1:8080/hooks"))
    assert "at most 2 webhook endpoints" in str(response.context["adminform"].form.errors)
    assert WebhookEndpoint.objects.count() == 2


def test_the_url_length_is_bounded_in_the_form(client, administrator, settings):
    settings.WEBHOOK_URL_MAX_LENGTH = 50
    client.force_login(administrator)
    response = client.post(ADD, form("https://example.com/" + "a" * 40))
    assert "longer than 50" in str(response.context["adminform"].form.errors["url"])


def test_endpoints_are_scoped_to_the_organization(client, administrator, organization, other_organization):
    mine, theirs = an_endpoint(organization, "https://mine.example.com/"), an_endpoint(other_organization)
    client.force_login(administrator)
    listed = client.get(LIST).content.decode()
    assert "mine.example.com" in listed and theirs.url not in listed
    for name in ("change", "log"):
        assert client.get(reverse(f"admin:events_webhookendpoint_{name}", args=[theirs.pk])).status_code in (
            302,
            404,
        )
    assert client.get(reverse("admin:events_webhookendpoint_log", args=[mine.pk])).status_code == 200


def test_a_marketer_has_no_webhook_pages(client, marketer):
    client.force_login(marketer)
    assert client.get(LIST).status_code == 403


def notification_of(endpoint, **fields) -> WebhookNotification:
    defaults = {
        "kind": "event.status",
        "source_id": 1,
        "webhook_id": "msg_abc",
        "next_attempt_at": timezone.now(),
    }
    return WebhookNotification.objects.create(
        endpoint=endpoint, payload={"type": "event.status"}, **{**defaults, **fields}
    )


def test_a_disabled_endpoint_is_announced_on_the_list(client, administrator, organization):
    endpoint = an_endpoint(organization)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False, disabled_reason="Disabled after 50 failed attempts in a row (the last: HTTP 500)."
    )
    client.force_login(administrator)
    response = client.get(LIST)
    notices = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("is disabled" in n and "50 failed attempts" in n for n in notices)
    change = client.get(reverse("admin:events_webhookendpoint_change", args=[endpoint.pk]))
    assert any("This endpoint is disabled" in str(m) for m in get_messages(change.wsgi_request))
    log = client.get(reverse("admin:events_webhookendpoint_log", args=[endpoint.pk])).content.decode()
    assert 'id="endpoint-disabled"' in log


def test_enabling_again_from_the_form_starts_the_run_of_failures_over(client, administrator, organization):
    endpoint = an_endpoint(organization, "https://93.184.216.34/in")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False, failures_in_a_row=50, disabled_reason="x"
    )
    client.force_login(administrator)
    response = client.post(
        reverse("admin:events_webhookendpoint_change", args=[endpoint.pk]), form(endpoint.url)
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failures_in_a_row == 0 and endpoint.disabled_reason == ""


def test_the_delivery_log_shows_attempts_and_replays_one(client, administrator, organization):
    endpoint = an_endpoint(organization)
    notification = notification_of(endpoint, state="failed", attempts=9)
    WebhookAttempt.objects.create(
        notification=notification,
        endpoint=endpoint,
        started_at=timezone.now(),
        status_code=500,
        duration_ms=12,
    )
    WebhookAttempt.objects.create(
        notification=notification,
        endpoint=endpoint,
        started_at=timezone.now(),
        error="ConnectionRefusedError",
    )
    client.force_login(administrator)
    log_url = reverse("admin:events_webhookendpoint_log", args=[endpoint.pk])
    page = client.get(log_url).content.decode()
    assert "msg_abc" in page and "500" in page and "12 ms" in page and "ConnectionRefusedError" in page
    assert page.count('class="replay"') == 2
    replay = reverse("admin:events_webhookendpoint_replay", args=[endpoint.pk])
    response = client.post(replay, {"notification": notification.pk})
    assert response.status_code == 302 and response["Location"] == log_url
    notification.refresh_from_db()
    assert (
        notification.state == "pending"
        and notification.attempts == 0
        and notification.webhook_id == "msg_abc"
    )


def test_a_notification_of_another_organization_cannot_be_replayed(
    client, administrator, organization, other_organization
):
    mine, theirs = an_endpoint(organization), an_endpoint(other_organization)
    notification = notification_of(theirs, state="failed")
    client.force_login(administrator)
    for endpoint in (mine, theirs):
        response = client.post(
            reverse("admin:events_webhookendpoint_replay", args=[endpoint.pk]),
            {"notification": notification.pk},
        )
        assert response.status_code in (302, 404) and response.status_code != 200
    notification.refresh_from_db()
    assert notification.state == "failed"


def test_another_organizations_administrator_is_not_shown_the_disabled_notice(
    client, organization, other_organization
):
    endpoint = an_endpoint(other_organization)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="gone")
    client.force_login(member(organization=organization, role=ADMINISTRATORS))
    response = client.get(LIST)
    assert not [m for m in get_messages(response.wsgi_request) if "disabled" in str(m)]
