"""What providers tell us later belongs to the organization whose provider said it: a STOP or a
receipt on an organization's SMPP bind, a Twilio callback on its provider's route, an ESP's webhook
on its provider's anymail route only ever touch that organization; the installation's binds and
routes only the organizations sending through the installation's providers."""

from __future__ import annotations

import base64
import json

import pytest
from django.urls import reverse
from twilio.request_validator import RequestValidator

from campaign.models import Quarantine
from events import person
from messages import org_providers, providers
from messages.channels import Recipient, RenderedMessage, backend_for, twilio_sms
from messages.channels import smpp as smpp_backend
from messages.models import Delivery, OrganizationProvider, ProviderEvent, SmsReceipt
from messages.provider_history import provider_history
from messages.sms_replies import receipts_of
from tests.factories import ProfileFactory
from tests.postmark import bounce
from tests.smpp import FakeSmsc

NUMBER = "+33612345678"


@pytest.fixture(autouse=True)
def _clean_state(settings):
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True
    backend_for.cache_clear()
    providers.forget_state()
    smpp_backend.reset_connection()
    yield
    smpp_backend.reset_connection()
    backend_for.cache_clear()
    providers.forget_state()


@pytest.fixture
def smscs():
    fakes: list[FakeSmsc] = []

    def make() -> FakeSmsc:
        fakes.append(FakeSmsc())
        return fakes[-1]

    yield make
    smpp_backend.reset_connection()
    for fake in fakes:
        fake.close()


def smpp_provider(organization, fake: FakeSmsc, name: str = "smsc") -> OrganizationProvider:
    provider = OrganizationProvider(
        organization=organization,
        name=name,
        kind="smpp",
        options={"host": "127.0.0.1", "port": fake.port, "system_id": "acme", "timeout": 5.0},
    )
    org_providers.save(provider, secrets={"password": "secret"})
    return provider


def send_sms(configuration, organization, backend=None) -> Delivery:
    """An SMS of the organization through its own providers (or the given backend), recorded."""
    backend = backend or org_providers.backend_of("sms", organization.pk)
    result = backend.send(RenderedMessage(parts={"text": "Hello"}), Recipient(address=NUMBER))
    assert result.sent, result.provider_response
    return sms_delivery(configuration, organization, result.provider_message_id, result.provider)


def sms_delivery(configuration, organization, message_id: str, provider: str = "") -> Delivery:
    return Delivery.objects.create(
        organization=organization,
        message=configuration.message,
        channel="sms",
        recipient=NUMBER,
        outcome="sent",
        provider_message_id=message_id,
        provider=provider,
    )


# --- SMPP: each bind has an owner ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_stop_on_an_organizations_bind_opts_out_in_that_organization_only(
    smscs, cart_configuration, organization, other_organization
):
    smsc = smscs()
    smpp_provider(organization, smsc)
    send_sms(cart_configuration, organization)
    sms_delivery(cart_configuration, other_organization, "other-1")  # the number's latest SMS
    here = ProfileFactory(organization=organization, mobile_phone=NUMBER)
    there = ProfileFactory(organization=other_organization, mobile_phone=NUMBER)
    smsc.deliver(source="33612345678", short_message=b"STOP")
    here.refresh_from_db()
    there.refresh_from_db()
    assert here.opted_out_sms and not there.opted_out_sms
    assert list(Quarantine.objects.values_list("organization_id", flat=True)) == [organization.pk]


@pytest.mark.django_db(transaction=True)
def test_one_message_id_from_two_organizations_smscs_is_two_receipts_each_on_its_delivery(
    smscs, cart_configuration, organization, other_organization
):
    mine, theirs = smscs(), smscs()
    smpp_provider(organization, mine)
    smpp_provider(other_organization, theirs)
    my_delivery = send_sms(cart_configuration, organization)
    their_delivery = send_sms(cart_configuration, other_organization)
    assert my_delivery.provider_message_id == their_delivery.provider_message_id == "msg1"
    mine.receipt(message_id="msg1", source="33612345678", stat="DELIVRD")
    theirs.receipt(message_id="msg1", source="33612345678", stat="DELIVRD")
    assert SmsReceipt.objects.count() == 2
    (my_receipt,) = receipts_of(my_delivery)
    (their_receipt,) = receipts_of(their_delivery)
    assert (my_receipt.delivery, my_receipt.organization) == (my_delivery, organization)
    assert (their_receipt.delivery, their_receipt.organization) == (their_delivery, other_organization)
    assert my_receipt.provider != their_receipt.provider
    # What the organization reads (its timeline, its delivery's page): the provider's kind.
    assert [(r.delivery_id, r.provider) for r in provider_history([my_delivery]).reports] == [
        (my_delivery.pk, "smpp")
    ]


@pytest.mark.django_db(transaction=True)
def test_two_organizations_on_one_smsc_account_have_a_bind_each(
    smscs, cart_configuration, organization, other_organization
):
    smsc = smscs()
    smpp_provider(organization, smsc)
    smpp_provider(other_organization, smsc)
    send_sms(cart_configuration, organization)
    their_delivery = send_sms(cart_configuration, other_organization)
    assert len(smsc.binds) == 2
    smsc.receipt(message_id=their_delivery.provider_message_id, source="33612345678")  # on the last bind
    (receipt,) = SmsReceipt.objects.all()
    assert (receipt.organization, receipt.delivery) == (other_organization, their_delivery)


@pytest.mark.django_db(transaction=True)
def test_the_installations_bind_speaks_only_for_organizations_sending_through_it(
    smscs, settings, cart_configuration, organization, other_organization
):
    installation = smscs()
    settings.SMPP_HOST, settings.SMPP_PORT = "127.0.0.1", installation.port
    settings.SMPP_SYSTEM_ID, settings.SMPP_PASSWORD, settings.SMPP_SOURCE_ADDR = "acme", "secret", "Acme"
    smpp_provider(organization, smscs())  # the organization sends through its own SMSC
    theirs = send_sms(cart_configuration, other_organization, smpp_backend.SmppSmsBackend())
    sms_delivery(cart_configuration, organization, "msg2")  # the number's latest, the id to come
    here = ProfileFactory(organization=organization, mobile_phone=NUMBER)
    there = ProfileFactory(organization=other_organization, mobile_phone=NUMBER)
    installation.deliver(source="33612345678", short_message=b"STOP")
    here.refresh_from_db()
    there.refresh_from_db()
    assert there.opted_out_sms and not here.opted_out_sms
    # A receipt of the installation's SMSC is never joined to the organization's own sends.
    installation.receipt(message_id="msg2", source="33612345678")
    assert SmsReceipt.objects.get(message_id="msg2").delivery is None
    installation.receipt(message_id=theirs.provider_message_id, source="33612345678")
    assert SmsReceipt.objects.get(message_id=theirs.provider_message_id).delivery == theirs


def test_a_changed_smpp_providers_old_bind_is_closed(smscs, cart_configuration, organization):
    before, after = smscs(), smscs()
    provider = smpp_provider(organization, before)
    send_sms(cart_configuration, organization)
    old = next(c for (owner, _), c in smpp_backend._connections.items() if owner.organization_id)
    reader = old.reader
    provider.options = {**provider.options, "port": after.port}
    org_providers.save(provider)
    send_sms(cart_configuration, organization)  # the rebuilt backend: the new SMSC
    before.wait(lambda: before.unbinds == 1 and before.closed_connections == 1)
    reader.join(10)
    assert not reader.is_alive()
    assert len(after.binds) == 1 and len(smpp_backend._connections) == 1
    # Deleted: its bind goes too.
    org_providers.delete([provider])
    assert org_providers.backend_of("sms", organization.pk) is None
    after.wait(lambda: after.unbinds == 1)
    assert not smpp_backend._connections


# --- Twilio: an organization's route ---------------------------------------------------------------


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


def test_a_twilio_status_for_another_organizations_sid_writes_nothing(
    client, settings, cart_configuration, organization, other_organization
):
    settings.TWILIO_WEBHOOK_BASE_URL = "https://campaign.example.com"
    mine = twilio_provider(organization, "my-token")
    twilio_provider(other_organization, "their-token")
    theirs = sms_delivery(cart_configuration, other_organization, "SM7", "twilio")
    form = {"MessageSid": "SM7", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    path = reverse("twilio-provider-status", args=[mine.pk])
    assert post_signed(client, path, form, "my-token").status_code == 204
    assert not SmsReceipt.objects.exists()
    assert not receipts_of(theirs).exists()
    # Its own delivery's status is recorded, as its own.
    own = sms_delivery(cart_configuration, organization, "SM8", "twilio")
    assert post_signed(client, path, {**form, "MessageSid": "SM8"}, "my-token").status_code == 204
    (receipt,) = receipts_of(own)
    assert (receipt.delivery, receipt.organization) == (own, organization)
    assert receipt.provider == f"twilio:org{organization.pk}:{mine.pk}"


def test_a_threads_twilio_clients_are_bounded():
    for index in range(twilio_sms.CLIENTS_PER_THREAD + 5):
        twilio_sms.client("AC1", f"token-{index}", "https://api.twilio.com", 5.0)
    assert len(twilio_sms._local.clients) == twilio_sms.CLIENTS_PER_THREAD
    assert ("AC1", "token-0", "https://api.twilio.com", 5.0) not in twilio_sms._local.clients


# --- an ESP's webhooks: an organization's own route ------------------------------------------------

INSTALLATION_SECRET = "installation:webhook-secret"
MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"


def basic(secret: str) -> str:
    return "Basic " + base64.b64encode(secret.encode()).decode()


def esp_provider(organization, secrets: dict[str, str], kind: str = "postmark") -> OrganizationProvider:
    provider = OrganizationProvider(organization=organization, name=kind, kind=kind, options={})
    key = "server_token" if kind == "postmark" else "api_key"
    org_providers.save(provider, secrets={key: "token", **secrets})
    return provider


def email_delivery(configuration, organization) -> Delivery:
    return Delivery.objects.create(
        organization=organization,
        message=configuration.message,
        channel="email",
        recipient="jack@example.com",
        outcome="sent",
        provider_message_id=MESSAGE_ID,
        provider="postmark",
    )


def post_bounce(client, path: str, secret: str, **bounce_fields):
    payload = bounce(message_id=MESSAGE_ID, email="jack@example.com", **bounce_fields)
    return client.post(
        path, json.dumps(payload), content_type="application/json", HTTP_AUTHORIZATION=basic(secret)
    )


@pytest.fixture
def esp_routes(settings, cart_configuration, organization, other_organization):
    settings.ANYMAIL = {"WEBHOOK_SECRET": INSTALLATION_SECRET}
    mine = esp_provider(organization, {"webhook_secret": "mine:secret"})
    theirs = esp_provider(other_organization, {"webhook_secret": "theirs:secret"})
    return mine, theirs


def route(provider: OrganizationProvider, esp: str = "postmark") -> str:
    return reverse("anymail-provider-tracking", args=[provider.pk, esp])


def test_a_providers_route_takes_its_own_secret_only(client, esp_routes, cart_configuration, organization):
    mine, theirs = esp_routes
    email_delivery(cart_configuration, organization)
    assert post_bounce(client, route(mine), INSTALLATION_SECRET).status_code == 400
    assert post_bounce(client, route(mine), "theirs:secret").status_code == 400
    assert post_bounce(client, route(mine, "mailgun"), "mine:secret").status_code == 404  # not its kind
    assert not ProviderEvent.objects.exists()
    assert post_bounce(client, route(mine), "mine:secret").status_code == 200
    assert ProviderEvent.objects.get().organization == organization


def test_a_bounce_on_a_providers_route_quarantines_in_its_organization_only(
    client, esp_routes, cart_configuration, organization, other_organization
):
    mine, theirs = esp_routes
    own = email_delivery(cart_configuration, organization)
    email_delivery(cart_configuration, other_organization)  # the same message id, later
    assert post_bounce(client, route(mine), "mine:secret").status_code == 200
    (event,) = ProviderEvent.objects.all()
    assert (event.organization, event.delivery) == (organization, own)
    assert list(Quarantine.objects.values_list("organization_id", flat=True)) == [organization.pk]
    # The same provider event id from the other organization's account is its own, not a repeat.
    assert post_bounce(client, route(theirs), "theirs:secret").status_code == 200
    assert ProviderEvent.objects.count() == 2
    assert Quarantine.objects.count() == 2


def test_a_route_without_its_secrets_is_off(client, settings, cart_configuration, organization):
    settings.ANYMAIL = {"WEBHOOK_SECRET": INSTALLATION_SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": "installation"}
    email_delivery(cart_configuration, organization)
    postmark = esp_provider(organization, {})
    mailgun = esp_provider(organization, {"webhook_secret": "mine:secret"}, kind="mailgun")
    assert post_bounce(client, route(postmark), INSTALLATION_SECRET).status_code == 404
    assert post_bounce(client, route(mailgun, "mailgun"), "mine:secret").status_code == 404  # no key
    assert not ProviderEvent.objects.exists()


def test_the_installations_route_joins_only_organizations_without_their_own(
    client, settings, cart_configuration, organization, other_organization
):
    settings.ANYMAIL = {"WEBHOOK_SECRET": INSTALLATION_SECRET}
    esp_provider(organization, {"webhook_secret": "mine:secret"})
    theirs = email_delivery(cart_configuration, other_organization)
    email_delivery(cart_configuration, organization)  # later, through its own account
    assert post_bounce(client, "/anymail/postmark/tracking/", INSTALLATION_SECRET).status_code == 200
    (event,) = ProviderEvent.objects.all()
    assert (event.organization, event.delivery) == (other_organization, theirs)


# --- reading and forgetting ------------------------------------------------------------------------


def test_another_organizations_unjoined_receipt_is_neither_shown_nor_forgotten(
    cart_configuration, organization, other_organization
):
    mine = sms_delivery(cart_configuration, organization, "msg5")
    SmsReceipt.objects.create(
        provider="smpp:org9:9", organization=other_organization, message_id="msg5", status="DELIVRD"
    )
    unknown = SmsReceipt.objects.create(provider="smpp", message_id="msg5", status="UNDELIV")
    assert [r.status for r in receipts_of(mine)] == ["UNDELIV"]
    assert [r.status for r in provider_history([mine]).reports] == ["UNDELIV"]
    ProfileFactory(organization=organization, email="jack@example.com", mobile_phone=NUMBER)
    person.forget_person(organization=organization, email="jack@example.com")
    assert not Delivery.objects.filter(pk=mine.pk).exists()
    assert not SmsReceipt.objects.filter(pk=unknown.pk).exists()
    assert SmsReceipt.objects.filter(organization=other_organization).exists()


def test_a_forked_child_keeps_none_of_its_parents_backends_nor_twilio_clients(monkeypatch):
    import os

    twilio_sms.client("AC1", "token", "https://api.twilio.com", 5.0)
    monkeypatch.setitem(org_providers._entries, ("sms", 1), org_providers._Entry(1, (), None))
    pid = os.fork()
    if pid == 0:  # the child: answers by its exit code, touching nothing of the parent's
        clean = not org_providers._entries and not getattr(twilio_sms._local, "clients", None)
        os._exit(0 if clean else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert org_providers._entries and twilio_sms._local.clients  # the parent keeps its own


def test_a_mailgun_providers_route_checks_its_own_signing_key(
    client, settings, cart_configuration, organization
):
    from tests.messages.test_provider_events import mailgun_event, mailgun_failed

    settings.ANYMAIL = {
        "WEBHOOK_SECRET": INSTALLATION_SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": "installation-key",
    }
    provider = esp_provider(
        organization, {"webhook_secret": "mine:secret", "webhook_signing_key": "its-own-key"}, kind="mailgun"
    )
    delivery = email_delivery(cart_configuration, organization)
    Delivery.objects.filter(pk=delivery.pk).update(
        provider_message_id="<20261129.1@mg.example.com>", provider="mailgun"
    )
    failed = mailgun_failed("20261129.1@mg.example.com", "jack@example.com")

    def post(key: str) -> int:
        body = json.dumps(mailgun_event(failed, key=key))
        auth = basic("mine:secret")
        return client.post(
            route(provider, "mailgun"), body, content_type="application/json", HTTP_AUTHORIZATION=auth
        ).status_code

    assert post("installation-key") == 400
    assert not ProviderEvent.objects.exists()
    assert post("its-own-key") == 200
    assert ProviderEvent.objects.get().delivery == delivery


def test_the_webhook_secrets_are_never_given_to_the_sending_backend(organization):
    provider = esp_provider(
        organization, {"webhook_secret": "mine:secret", "webhook_signing_key": "its-own-key"}, kind="mailgun"
    )
    (built,) = org_providers.build("email", [provider]).providers
    assert "api_key" in built.backend.options
    assert not {"webhook_secret", "webhook_signing_key"} & set(built.backend.options)


def test_an_organization_with_its_own_smsc_neither_sees_nor_forgets_the_installations_receipts(
    smscs, cart_configuration, organization
):
    """An unjoined receipt of the installation's SMSC (owner not known yet) with the same message id
    as a delivery sent through the organization's own SMSC is not that organization's."""
    smpp_provider(organization, smscs())
    mine = sms_delivery(cart_configuration, organization, "msg7", provider="smsc")
    installations = SmsReceipt.objects.create(provider="smpp", message_id="msg7", status="UNDELIV")
    assert list(receipts_of(mine)) == [] and provider_history([mine]).reports == []
    ProfileFactory(organization=organization, email="jill@example.com", mobile_phone=NUMBER)
    person.forget_person(organization=organization, email="jill@example.com")
    assert not Delivery.objects.filter(pk=mine.pk).exists()
    assert SmsReceipt.objects.filter(pk=installations.pk).exists()
