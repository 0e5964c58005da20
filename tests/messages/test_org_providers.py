"""An organization's own providers (messages.org_providers, the admin of messages.admin_providers):
its email leaves through its SMTP server while another organization's uses the settings'; a change
in the admin is used by the next send without a restart; secrets encrypted in the table and never on
a page; the admin scoped to the organization and its bounds; rate limits per organization provider;
Twilio's callbacks of an organization's provider signed with its own token."""

from __future__ import annotations

import copy

import pytest
from django.db import connection
from django.urls import reverse
from twilio.request_validator import RequestValidator

from campaign.models import Quarantine
from campaign.roles import ADMINISTRATORS
from events import pipeline
from messages import org_providers, providers
from messages.channels import backend_for
from messages.models import Delivery, OrganizationProvider, SmsReceipt
from tests.conftest import CART_EVENT, publish_events, seed_body
from tests.events.test_pipeline import FUTURE, accept
from tests.factories import ProfileFactory, member
from tests.smtp import SmtpServer

pytestmark = pytest.mark.django_db
ADD = reverse("admin:transactional_organizationprovider_add")
LIST = reverse("admin:transactional_organizationprovider_changelist")
PASSWORD = "s3cret-Pa55word-4a9f"


@pytest.fixture(autouse=True)
def _allow_loopback(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True
    backend_for.cache_clear()
    providers.forget_state()
    yield
    backend_for.cache_clear()
    providers.forget_state()


def smtp_form(port: int, **overrides) -> dict[str, str]:
    data = {
        "name": "own-smtp",
        "kind": "smtp",
        "position": "0",
        "rate_limit": "0",
        "enabled": "on",
        "smtp__host": "127.0.0.1",
        "smtp__port": str(port),
        "smtp__username": "",
        "smtp__password": PASSWORD,
        "smtp__timeout": "5",
    }
    data.update(overrides)
    return data


def smtp_provider(
    organization, port: int, *, name: str = "own-smtp", password: str = ""
) -> OrganizationProvider:
    provider = OrganizationProvider(
        organization=organization,
        name=name,
        kind="smtp",
        options={"host": "127.0.0.1", "port": port, "use_tls": False, "timeout": 5.0},
    )
    org_providers.save(provider, secrets={"password": password} if password else {})
    return provider


def send_cart(configuration, email: str) -> Delivery:
    event = accept(configuration, {**seed_body(scheduled=None, expiration=FUTURE), "email": email})
    assert pipeline.process(event.pk) == "processed"
    return Delivery.objects.get(event_link__event=event)


# --- resolution ------------------------------------------------------------------------------


def test_an_organization_with_its_own_smtp_sends_through_it_another_through_the_settings(
    cart_configuration, other_organization, smtp_email
):
    own = SmtpServer()
    other_configuration = publish_events(other_organization, copy.deepcopy(CART_EVENT))[0]
    with own:
        smtp_provider(cart_configuration.organization, own.port)
        mine = send_cart(cart_configuration, "mine@example.com")
        theirs = send_cart(other_configuration, "theirs@example.com")
        (received,) = own.mailbox.wait_for(1)
    assert received.recipients == ["mine@example.com"]
    assert mine.provider == "own-smtp" and [a["provider"] for a in mine.attempts] == ["own-smtp"]
    (settings_received,) = smtp_email.wait_for(1)
    assert settings_received.recipients == ["theirs@example.com"]
    assert theirs.provider == "" and theirs.outcome == "sent"


def test_a_disabled_provider_leaves_the_organization_on_the_settings(cart_configuration, smtp_email):
    own = SmtpServer()
    provider = smtp_provider(cart_configuration.organization, own.port)
    provider.enabled = False
    org_providers.save(provider)
    delivery = send_cart(cart_configuration, "plain@example.com")
    assert smtp_email.wait_for(1)[0].recipients == ["plain@example.com"] and delivery.provider == ""


def test_a_change_in_the_admin_is_used_by_the_next_send_without_a_restart(
    client, cart_configuration, administrator, smtp_email
):
    first, second = SmtpServer(), SmtpServer()
    client.force_login(administrator)
    with first, second:
        assert client.post(ADD, smtp_form(first.port)).status_code == 302
        send_cart(cart_configuration, "one@example.com")
        assert first.mailbox.wait_for(1)[0].recipients == ["one@example.com"]
        provider = OrganizationProvider.objects.get()
        change = reverse("admin:transactional_organizationprovider_change", args=[provider.pk])
        form = smtp_form(second.port, smtp__password="")  # the password kept
        del form["kind"]  # read-only once created
        assert client.post(change, form).status_code == 302
        send_cart(cart_configuration, "two@example.com")
        assert second.mailbox.wait_for(1)[0].recipients == ["two@example.com"]
    assert len(first.mailbox.messages) == 1 and not smtp_email.messages
    assert org_providers.secrets_of(OrganizationProvider.objects.get()) == {"password": PASSWORD}


def test_a_process_reads_the_providers_again_only_after_a_change(cart_configuration, settings):
    settings.GENERATION_CHECK_SECONDS = 3600
    organization = cart_configuration.organization
    provider = smtp_provider(organization, 2525)
    backend = backend_for("email", organization.pk)
    assert isinstance(backend, providers.FailoverBackend)
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert backend_for("email", organization.pk) is backend
    assert len(queries) == 0
    provider.rate_limit = 5
    org_providers.save(provider)
    rebuilt = backend_for("email", organization.pk)
    assert rebuilt is not backend and rebuilt.providers[0].rate_limit == 5


def test_rate_limit_keys_are_the_organization_providers(organization, other_organization):
    mine = smtp_provider(organization, 2525, name="twilio-like")
    theirs = smtp_provider(other_organization, 2525, name="twilio-like")
    keys = {
        backend_for("email", o.pk).key(backend_for("email", o.pk).providers[0])
        for o in (organization, other_organization)
    }
    assert keys == {f"email:org{organization.pk}:{mine.pk}", f"email:org{other_organization.pk}:{theirs.pk}"}


def test_two_organizations_providers_of_one_name_are_two_rate_limits(
    organization, other_organization, settings
):
    settings.PROVIDERS_REDIS_URL = ""
    settings.CELERY_BROKER_URL = "memory://"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    providers.forget_state()
    smtp_provider(organization, 2525, name="shared")
    smtp_provider(other_organization, 2525, name="shared")
    keys = [
        backend_for("email", o.pk).key(backend_for("email", o.pk).providers[0])
        for o in (organization, other_organization)
    ]
    assert providers.wait_for_slot(keys[0], 1)
    assert not providers.wait_for_slot(keys[0], 1, deadline=0)  # the first organization's second: none
    assert providers.wait_for_slot(keys[1], 1)  # the second organization's own limit


# --- secrets -----------------------------------------------------------------------------------


def test_secrets_are_encrypted_in_the_table_and_never_on_a_page(client, administrator, settings):
    client.force_login(administrator)
    assert client.post(ADD, smtp_form(2525)).status_code == 302
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM transactional_organizationprovider")
        rows = cursor.fetchall()
    assert rows and PASSWORD not in repr(rows)
    provider = OrganizationProvider.objects.get()
    assert org_providers.secrets_of(provider) == {"password": PASSWORD}
    change = reverse("admin:transactional_organizationprovider_change", args=[provider.pk])
    page = client.get(change).content.decode()
    assert PASSWORD not in page and "(set: leave empty to keep it" in page
    listed = client.get(LIST).content.decode()
    assert PASSWORD not in listed and "password: set" in listed


def test_a_providers_name_is_fixed_once_created(client, administrator):
    """Deliveries name the provider that sent them and its later bounces and receipts are joined by
    that name: a change form keeps it, whatever is POSTed."""
    client.force_login(administrator)
    client.post(ADD, smtp_form(2525))
    provider = OrganizationProvider.objects.get()
    change = reverse("admin:transactional_organizationprovider_change", args=[provider.pk])
    form = smtp_form(2526, name="renamed", smtp__password="")
    del form["kind"]
    assert client.post(change, form).status_code == 302
    provider.refresh_from_db()
    assert provider.name != "renamed" and provider.options["port"] == 2526
    assert 'name="name"' not in client.get(change).content.decode()


def test_a_secret_is_cleared_by_its_tick(client, administrator):
    client.force_login(administrator)
    client.post(ADD, smtp_form(2525))
    provider = OrganizationProvider.objects.get()
    change = reverse("admin:transactional_organizationprovider_change", args=[provider.pk])
    form = smtp_form(2525, smtp__password="", smtp__password__clear="on")
    del form["kind"]
    assert client.post(change, form).status_code == 302
    provider.refresh_from_db()
    assert provider.secrets_encrypted == "" and org_providers.secrets_of(provider) == {}


def test_rotation_encrypts_the_secrets_under_the_new_key(organization, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    provider = smtp_provider(organization, 2525, password=PASSWORD)
    settings.ENCRYPTION_KEYS = [new, old]
    call_command("reencrypt_provider_secrets")
    settings.ENCRYPTION_KEYS = [new]
    provider.refresh_from_db()
    assert org_providers.secrets_of(provider) == {"password": PASSWORD}


# --- the admin ---------------------------------------------------------------------------------


def test_providers_are_scoped_to_the_organization(client, administrator, organization, other_organization):
    smtp_provider(organization, 2525, name="mine")
    theirs = smtp_provider(other_organization, 2525, name="theirs")
    client.force_login(administrator)
    listed = client.get(LIST).content.decode()
    assert "mine" in listed and "theirs" not in listed
    change = reverse("admin:transactional_organizationprovider_change", args=[theirs.pk])
    response = client.get(change)
    assert response.status_code in (302, 404) and "theirs" not in response.content.decode()
    assert client.post(change, smtp_form(2525, name="stolen")).status_code in (302, 404)
    theirs.refresh_from_db()
    assert theirs.name == "theirs"


def test_a_new_provider_belongs_to_the_administrators_organization(client, administrator, organization):
    client.force_login(administrator)
    assert client.post(ADD, smtp_form(2525)).status_code == 302
    provider = OrganizationProvider.objects.get()
    assert provider.organization == organization and provider.channel == "email"


def test_a_marketer_has_no_provider_pages(client, organization):
    client.force_login(member(organization=organization, role="Marketers"))
    assert client.get(LIST).status_code == 403


def errors_of(response) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was accepted"
    return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"smtp__port": "70000"}, "smtp__port", "1 to 65535"),
        ({"smtp__port": "0"}, "smtp__port", "1 to 65535"),
        ({"smtp__host": "not a host!"}, "smtp__host", "not a host name"),
        ({"smtp__host": ""}, "smtp__host", "required"),
        ({"smtp__timeout": "500"}, "smtp__timeout", "seconds"),
        ({"rate_limit": "-1"}, "rate_limit", "greater than or equal to 0"),
        ({"rate_limit": "100001"}, "rate_limit", "less than or equal to 100000"),
        ({"kind": "django.core.mail.backends.smtp.EmailBackend"}, "kind", "Select a valid choice"),
        ({"kind": "nosuchkind"}, "kind", "Select a valid choice"),
        ({"name": "not a slug"}, "name", "letters"),
        ({"smtp__use_tls": "on", "smtp__use_ssl": "on"}, "smtp__use_ssl", "not both"),
        # 4 exchanges of 30 s and a margin outlive what a lease of 60 s leaves: the highest that fits
        ({"smtp__timeout": "30"}, "smtp__timeout", "more than the 53 s a worker's claim on an event"),
        ({"smtp__timeout": "30"}, "smtp__timeout", "at most 12 seconds"),
    ],
)
def test_bounds_are_form_errors(client, administrator, overrides, field, reason):
    client.force_login(administrator)
    errors = errors_of(client.post(ADD, smtp_form(2525, **overrides)))
    assert field in errors and reason in " ".join(errors[field])
    assert not OrganizationProvider.objects.exists()


def test_a_private_host_is_refused_unless_allowed(client, administrator, settings):
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = False
    client.force_login(administrator)
    errors = errors_of(client.post(ADD, smtp_form(2525)))
    assert "private, loopback or link-local" in " ".join(errors["smtp__host"])
    errors = errors_of(
        client.post(
            ADD,
            {
                "name": "gw",
                "kind": "http_sms",
                "position": "0",
                "rate_limit": "0",
                "http_sms__url": "http://10.0.0.1/sms",
            },
        )
    )
    assert "https://" in " ".join(errors["http_sms__url"])


def test_a_bad_service_account_is_a_form_error_that_quotes_nothing_of_it(client, administrator):
    client.force_login(administrator)
    base = {"name": "fcm", "kind": "fcm", "position": "0", "rate_limit": "0"}
    secret_text = '{"type": "service_account", "private_key": "TOPSECRETKEY"'  # cut short
    errors = errors_of(client.post(ADD, {**base, "fcm__service_account_json": secret_text}))
    assert "Not JSON" in " ".join(errors["fcm__service_account_json"])
    page = client.post(ADD, {**base, "fcm__service_account_json": secret_text}).content.decode()
    assert "TOPSECRETKEY" not in page
    errors = errors_of(client.post(ADD, {**base, "fcm__service_account_json": '{"type": "user"}'}))
    assert "service_account" in " ".join(errors["fcm__service_account_json"])
    errors = errors_of(client.post(ADD, base))
    assert "required" in " ".join(errors["fcm__service_account_json"])


def test_a_name_used_twice_in_a_channel_is_a_form_error(client, administrator, organization):
    smtp_provider(organization, 2525, name="own-smtp")
    client.force_login(administrator)
    errors = errors_of(client.post(ADD, smtp_form(2525)))
    assert "already exists" in " ".join(sum(errors.values(), []))


# --- Twilio per organization -------------------------------------------------------------------

NUMBER = "+33612345678"
ORG_TOKEN, OTHER_TOKEN, GLOBAL_TOKEN = "org-twilio-token", "other-org-token", "global-twilio-token"


def twilio_provider(organization, token: str) -> OrganizationProvider:
    provider = OrganizationProvider(
        organization=organization,
        name="twilio",
        kind="twilio",
        options={"account_sid": "AC" + "1" * 32, "base_url": "https://api.twilio.com", "timeout": 10.0},
    )
    org_providers.save(provider, secrets={"auth_token": token})
    return provider


def post_signed(client, path: str, form: dict, token: str):
    signature = RequestValidator(token).compute_signature("https://campaign.example.com" + path, form)
    return client.post(path, form, HTTP_X_TWILIO_SIGNATURE=signature)


@pytest.fixture
def twilio_routes(settings, cart_configuration, other_organization):
    settings.TWILIO_AUTH_TOKEN = GLOBAL_TOKEN
    settings.TWILIO_WEBHOOK_BASE_URL = "https://campaign.example.com"
    mine = twilio_provider(cart_configuration.organization, ORG_TOKEN)
    theirs = twilio_provider(other_organization, OTHER_TOKEN)
    Delivery.objects.create(
        organization=cart_configuration.organization,
        message=cart_configuration.message,
        channel="sms",
        recipient=NUMBER,
        outcome="sent",
        provider_message_id="SM9",
    )
    return mine, theirs


def test_an_organizations_twilio_callback_is_checked_with_its_own_token(client, twilio_routes):
    mine, theirs = twilio_routes
    path = reverse("twilio-provider-status", args=[mine.pk])
    form = {"MessageSid": "SM9", "MessageStatus": "delivered"}
    assert post_signed(client, path, form, GLOBAL_TOKEN).status_code == 403
    assert post_signed(client, path, form, OTHER_TOKEN).status_code == 403
    assert not SmsReceipt.objects.exists()
    assert post_signed(client, path, form, ORG_TOKEN).status_code == 204
    assert SmsReceipt.objects.get().status == "delivered"
    # The installation's route keeps the installation's token.
    assert post_signed(client, reverse("twilio-status"), form, ORG_TOKEN).status_code == 403


def test_a_route_of_no_twilio_provider_is_refused(client, twilio_routes, organization):
    smtp = smtp_provider(organization, 2525)
    for pk in (smtp.pk, 999_999):
        path = reverse("twilio-provider-status", args=[pk])
        assert (
            post_signed(client, path, {"MessageSid": "SM9", "MessageStatus": "sent"}, "").status_code == 403
        )


def test_an_inbound_stop_through_an_organizations_route_opts_out_in_that_organization(
    client, twilio_routes, organization, other_organization
):
    mine, theirs = twilio_routes
    here = ProfileFactory(organization=organization, mobile_phone=NUMBER)
    there = ProfileFactory(organization=other_organization, mobile_phone=NUMBER)
    path = reverse("twilio-provider-inbound", args=[theirs.pk])
    assert post_signed(client, path, {"From": NUMBER, "Body": "STOP"}, ORG_TOKEN).status_code == 403
    response = post_signed(client, path, {"From": NUMBER, "Body": "STOP"}, OTHER_TOKEN)
    assert response.status_code == 200
    here.refresh_from_db()
    there.refresh_from_db()
    assert there.opted_out_sms and not here.opted_out_sms
    assert list(Quarantine.objects.values_list("organization_id", flat=True)) == [other_organization.pk]


def test_the_status_callback_url_names_the_provider(settings, organization):
    from messages.provider_kinds import twilio_callback_url

    settings.TWILIO_WEBHOOK_BASE_URL = "https://campaign.example.com/"
    assert twilio_callback_url(42) == "https://campaign.example.com/webhooks/twilio/42/status"
    settings.TWILIO_WEBHOOK_BASE_URL = ""
    settings.PUBLIC_URL = ""
    assert twilio_callback_url(42) == ""


# --- the role ----------------------------------------------------------------------------------


def test_administrators_have_the_provider_permissions(organization):
    user = member(organization=organization, role=ADMINISTRATORS)
    assert all(
        user.has_perm(f"transactional.{action}_organizationprovider")
        for action in ("view", "add", "change", "delete")
    )


# --- an organization's own email service provider, and its webhooks ----------------------------


def test_an_organizations_postmark_sends_with_its_token_and_its_bounce_is_kept_once(
    client, cart_configuration, settings
):
    """The organization's own Postmark account (its server token, encrypted) sends its email; the
    provider's bounce, sent twice to its provider's route with its own webhook secret, is recorded
    once on that organization's delivery and quarantines the address there only. The installation's
    route (its secret) does not speak for the organization's account."""
    import base64
    import json

    from campaign.models import Quarantine
    from messages.models import ProviderEvent
    from tests.postmark import TOKEN, FakePostmark, bounce

    installation_secret = "postmark:a-long-webhook-secret"
    own_secret = "acme:its-own-webhook-secret"
    settings.ANYMAIL = {"WEBHOOK_SECRET": installation_secret}  # no Postmark token of its own
    with FakePostmark() as fake:
        provider = OrganizationProvider(
            organization=cart_configuration.organization,
            name="postmark",
            kind="postmark",
            options={"api_url": fake.url},
        )
        org_providers.save(provider, secrets={"server_token": TOKEN, "webhook_secret": own_secret})
        delivery = send_cart(cart_configuration, "jack@example.com")
        (sent,) = fake.sent
    assert delivery.outcome == "sent" and delivery.provider == "postmark"
    assert delivery.provider_message_id == sent["MessageID"]
    payload = bounce(message_id=sent["MessageID"], email="jack@example.com")

    def post(url: str, secret: str) -> int:
        auth = "Basic " + base64.b64encode(secret.encode()).decode()
        response = client.post(
            url, json.dumps(payload), content_type="application/json", HTTP_AUTHORIZATION=auth
        )
        return response.status_code

    assert post("/anymail/postmark/tracking/", installation_secret) == 200
    assert not ProviderEvent.objects.exists()
    own_route = f"/anymail/provider/{provider.pk}/postmark/tracking/"
    assert post(own_route, installation_secret) == 400
    assert not ProviderEvent.objects.exists()
    assert [post(own_route, own_secret) for _ in range(2)] == [200, 200]
    (event,) = ProviderEvent.objects.all()
    assert event.organization == cart_configuration.organization and event.delivery == delivery
    assert list(Quarantine.objects.values_list("organization_id", "address")) == [
        (cart_configuration.organization.pk, "jack@example.com")
    ]


# --- the organization's SMS sender --------------------------------------------------------------


@pytest.mark.parametrize("sender", ["+33612345678", "12345", "ACME", "Acme Shop", "A", "ACME-2026"])
def test_an_sms_sender_is_a_number_a_short_code_or_up_to_11_gsm_characters(organization, sender):
    organization.sms_sender = sender
    organization.full_clean()


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        ("Acme Shop 2026", "not an SMS sender"),  # 14 characters
        ("Açme", "not an SMS sender"),  # not in the GSM basic set
        ("12", "not an SMS sender"),  # too short for a short code, no letter
        ("123456789", "not an SMS sender"),  # too long for a short code, no letter
        ("+1", "is not a phone number"),
        ("+33 6 12 34 56 78", "Write the sender as it is sent: +33612345678"),
        ("AC\nME", "not an SMS sender"),
    ],
)
def test_a_bad_sms_sender_is_refused_with_its_reason(organization, sender, reason):
    from django.core.exceptions import ValidationError

    organization.sms_sender = sender
    with pytest.raises(ValidationError) as refused:
        organization.full_clean()
    assert reason in " ".join(refused.value.message_dict["sms_sender"])


def test_an_administrator_sets_the_sms_sender_in_the_admin(client, administrator, organization):
    client.force_login(administrator)
    change = reverse("admin:campaign_organization_change", args=[organization.pk])
    page = client.get(change)
    form = {k: v for k, v in page.context["adminform"].form.initial.items() if v is not None}
    response = client.post(change, {**form, "sms_sender": "Acme Shop 2026"})
    assert response.status_code == 200 and "sms_sender" in response.context["adminform"].form.errors
    assert client.post(change, {**form, "sms_sender": "ACME"}).status_code == 302
    organization.refresh_from_db()
    assert organization.sms_sender == "ACME"


def test_an_organizations_smtp_never_carries_the_installations_credentials(organization, settings):
    from django.core.mail import get_connection

    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "installation", "installation-password"
    settings.EMAIL_SSL_CERTFILE = "/etc/ssl/installation.pem"
    smtp_provider(organization, 2525)  # no user name, no password
    (provider,) = backend_for("email", organization.pk).providers
    connection = get_connection(provider.backend.backend_path, **provider.backend.options)
    assert (connection.host, connection.port) == ("127.0.0.1", 2525)
    assert (connection.username, connection.password, connection.ssl_certfile) == ("", "", "")


# --- send a test -------------------------------------------------------------------------------


def test_send_a_test_goes_through_this_provider_to_a_proof_recipient_only(
    client, administrator, organization, other_organization
):
    from campaign.models import ProofRecipient

    ProofRecipient.objects.create(organization=organization, kind="email", value="qa@example.com")
    client.force_login(administrator)
    with SmtpServer() as own:
        provider = smtp_provider(organization, own.port, password="")
        test_url = reverse("admin:transactional_organizationprovider_test", args=[provider.pk])
        assert "Send a test" in client.get(LIST).content.decode()
        refused = client.post(test_url, {"recipient": "stranger@example.com"})
        assert refused.status_code == 200 and "neither a test profile" in refused.content.decode()
        page = client.post(test_url, {"recipient": "qa@example.com"}).content.decode()
        (received,) = own.mailbox.wait_for(1)
    assert 'id="send-test-result" class="success"' in page and "250 accepted" in page
    assert received.recipients == ["qa@example.com"] and received.subject == "Test message"
    theirs = smtp_provider(other_organization, 2525, name="theirs")
    other_url = reverse("admin:transactional_organizationprovider_test", args=[theirs.pk])
    assert client.post(other_url, {"recipient": "qa@example.com"}).status_code == 404


def test_a_failing_test_send_shows_the_providers_answer(client, administrator, organization):
    from campaign.models import ProofRecipient
    from tests.smtp import free_port

    ProofRecipient.objects.create(organization=organization, kind="email", value="qa@example.com")
    provider = smtp_provider(organization, free_port())  # nothing listens there
    client.force_login(administrator)
    test_url = reverse("admin:transactional_organizationprovider_test", args=[provider.pk])
    page = client.post(test_url, {"recipient": "qa@example.com"}).content.decode()
    assert 'class="errornote"' in page and "temporaryFailure" in page and "Connection" in page


def test_providers_whose_secrets_no_key_opens_hold_the_send_back(organization, settings, caplog):
    """A key dropped before the rotation ran: the organization's email waits (a temporary failure)
    rather than leaving through the installation's provider, and nothing logged names the secret."""
    from cryptography.fernet import Fernet

    from messages.channels import Recipient, RenderedMessage

    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    smtp_provider(organization, 2525, password=PASSWORD)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    backend = backend_for("email", organization.pk)
    assert isinstance(backend, org_providers.Unbuildable)
    result = backend.send(RenderedMessage(parts={"subject": "s", "text": "t"}), Recipient("a@example.com"))
    assert result.outcome == "temporaryFailure" and "cannot be built" in result.provider_response
    assert "InvalidToken" in caplog.text and PASSWORD not in caplog.text


def test_a_superuser_adds_a_provider_for_any_organization(admin_client, other_organization):
    assert admin_client.get(ADD).status_code == 200
    response = admin_client.post(ADD, smtp_form(2525, organization=str(other_organization.pk)))
    assert response.status_code == 302
    provider = OrganizationProvider.objects.get()
    assert provider.organization == other_organization
    assert org_providers.secrets_of(provider) == {"password": PASSWORD}
    change = reverse("admin:transactional_organizationprovider_change", args=[provider.pk])
    assert PASSWORD not in admin_client.get(change).content.decode()
