"""Several SMS and push providers (SMS_PROVIDERS, PUSH_PROVIDERS: messages.providers): each backend
built from its own options, failover between two fake SMSCs and two fake FCM endpoints on loopback,
a rate limit shared through Redis, and a wrong provider entry named by the system check."""

from __future__ import annotations

import base64
import json
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from events import pipeline
from events.models import Event
from events.schema import validate_event
from events.services import ingest
from messages import providers
from messages.channels import Recipient, RenderedMessage, backend_for, channel
from messages.channels import smpp as smpp_backend
from messages.channels.push import FcmPushBackend, HttpPushBackend
from messages.channels.smpp import SmppSmsBackend
from messages.channels.sms import HttpSmsBackend
from messages.channels.twilio_sms import TwilioSmsBackend
from messages.models import Delivery
from tests.conftest import publish_events
from tests.fcm import Answer, FakeGoogle
from tests.smpp import FakeSmsc
from tests.smtp import free_port
from tests.twilio import SID, TOKEN, FakeTwilio

NUMBER = "+33612345678"
SMPP = "messages.channels.smpp.SmppSmsBackend"
FCM = "messages.channels.push.FcmPushBackend"


def smpp_provider(name: str, port: int, **extra) -> dict:
    options = {"host": "127.0.0.1", "port": port, "system_id": "acme", "password": "secret", "timeout": 2}
    return {"name": name, "backend": SMPP, "options": {**options, **extra.pop("options", {})}, **extra}


@pytest.fixture
def smscs():
    """Two fake SMSCs; every bind of this process closed before and after."""
    fakes = (FakeSmsc(), FakeSmsc())
    smpp_backend.reset_connection()
    yield fakes
    smpp_backend.reset_connection()
    for fake in fakes:
        fake.close()


@pytest.fixture
def googles():
    fakes = (FakeGoogle(), FakeGoogle())
    yield fakes
    for fake in fakes:
        fake.stop()


def fcm_provider(name: str, google: FakeGoogle) -> dict:
    # The service account as a JSON object in the setting; its token_uri is this fake's.
    options = {"service_account_json": google.service_account, "base_url": google.base_url}
    return {"name": name, "backend": FCM, "options": options}


def sms_event(organization) -> Event:
    (configuration,) = publish_events(
        organization,
        {
            "name": "otp",
            "channel": "sms",
            "fields": [{"name": "code", "type": "text"}],
            "message": {"text": "Your code is {{ ctx.code }}"},
        },
    )
    body = {"mobilePhone": NUMBER, "ctx": {"code": "1234"}}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def push_event(organization) -> Event:
    (configuration,) = publish_events(
        organization,
        {
            "name": "shipped",
            "channel": "push",
            "fields": [{"name": "order", "type": "text"}],
            "message": {"title": "Shipped", "body": "Order {{ ctx.order }} is on its way"},
        },
    )
    body = {"pushPlatform": "gcm", "registrationToken": "token-1", "ctx": {"order": "A1"}}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


# --- failover ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_sms_goes_out_through_the_second_smsc_when_the_first_does_not_listen(
    settings, providers_redis, smscs, organization
):
    _, second = smscs
    settings.SMS_PROVIDERS = [smpp_provider("first", free_port()), smpp_provider("second", second.port)]
    backend_for.cache_clear()
    event = sms_event(organization)
    assert pipeline.process(event.pk) == "processed"
    (pdu,) = second.submitted
    assert pdu.destination_addr == b"33612345678"
    delivery = Delivery.objects.get(event_link__event=event)
    assert delivery.outcome == "sent" and delivery.provider == "second"
    assert [(a["provider"], a["outcome"]) for a in delivery.attempts] == [
        ("first", "temporaryFailure"),
        ("second", "sent"),
    ]
    assert "SMPP" in delivery.attempts[0]["response"]


@pytest.mark.django_db
def test_a_push_goes_out_through_the_second_fcm_when_the_first_answers_503(
    settings, providers_redis, googles, organization
):
    first, second = googles
    first.answers.append(Answer(503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "down"}}))
    settings.PUSH_PROVIDERS = [fcm_provider("first", first), fcm_provider("second", second)]
    backend_for.cache_clear()
    event = push_event(organization)
    assert pipeline.process(event.pk) == "processed"
    assert len(first.sends) == 1 and len(second.sends) == 1
    assert second.sends[0]["body"]["message"]["token"] == "token-1"
    assert second.sends[0]["authorization"] == "Bearer access-1"  # its own token exchange
    delivery = Delivery.objects.get(event_link__event=event)
    assert delivery.provider == "second"
    assert [(a["provider"], a["outcome"]) for a in delivery.attempts] == [
        ("first", "temporaryFailure"),
        ("second", "sent"),
    ]
    assert "503 UNAVAILABLE" in delivery.attempts[0]["response"]


def test_a_refused_number_tries_no_other_smsc(settings, providers_redis, smscs):
    import smpplib.consts

    first, second = smscs
    first.submit_status = smpplib.consts.SMPP_ESME_RINVDSTADR
    settings.SMS_PROVIDERS = [smpp_provider("first", first.port), smpp_provider("second", second.port)]
    backend_for.cache_clear()
    result = backend_for("sms").send(RenderedMessage(parts={"text": "Hi"}), Recipient(NUMBER))
    assert result.outcome == "permanentFailure" and result.provider == "first"
    assert second.submitted == [] and len(result.attempts) == 1


# --- the rate limit ----------------------------------------------------------------------------


def test_an_smpp_providers_rate_limit_is_shared_through_redis(settings, providers_redis, smscs):
    smsc, _ = smscs
    settings.SMS_PROVIDERS = [smpp_provider("limited", smsc.port, rate_limit=5)]
    backend_for.cache_clear()
    backend = backend_for("sms")
    assert isinstance(backend, providers.FailoverBackend)
    other_worker = providers.RedisState(providers_redis)  # another process took the second's 5 slots
    assert all(other_worker.take_slot("sms:limited", 5, 1_000_000) == 0 for _ in range(5))
    started = time.monotonic()
    results = [backend.send(RenderedMessage(parts={"text": f"m{i}"}), Recipient(NUMBER)) for i in range(6)]
    elapsed = time.monotonic() - started
    assert all(r.sent and r.provider == "limited" for r in results)
    assert len(smsc.submitted) == 6
    # Five waited for the other worker's window to pass, the sixth for the next one.
    assert elapsed >= 1.8


# --- each backend built from its own options ---------------------------------------------------


def test_a_twilio_backend_sends_with_its_own_credentials(settings):
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = SID, TOKEN
    settings.TWILIO_FROM, settings.TWILIO_MESSAGING_SERVICE_SID = "+15005550006", ""
    settings.TWILIO_WEBHOOK_BASE_URL = "https://campaign.example.com"
    fake = FakeTwilio()
    settings.TWILIO_BASE_URL = fake.url
    other_sid, other_token = "AC" + "1" * 32, "other-auth-token"
    try:
        own = TwilioSmsBackend(
            account_sid=other_sid,
            auth_token=other_token,
            from_="+15005550009",
            base_url=fake.url,
            timeout=5,
            status_callback_url="",
        )
        assert own.send(RenderedMessage(parts={"text": "Hi"}), Recipient(NUMBER)).sent
        # In the same thread, the settings' account: its own client, its own credentials.
        assert TwilioSmsBackend().send(RenderedMessage(parts={"text": "Hi"}), Recipient(NUMBER)).sent
    finally:
        fake.stop()
    mine, settings_ = fake.requests
    basic = "Basic " + base64.b64encode(f"{other_sid}:{other_token}".encode()).decode()
    assert mine["authorization"] == basic
    assert mine["path"] == f"/2010-04-01/Accounts/{other_sid}/Messages.json"
    assert mine["form"]["From"] == "+15005550009" and "StatusCallback" not in mine["form"]
    assert settings_["authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert settings_["form"]["From"] == "+15005550006"
    assert settings_["form"]["StatusCallback"] == "https://campaign.example.com/webhooks/twilio/status"


def test_two_smpp_providers_keep_two_binds_and_one_account_keeps_one(settings, smscs):
    smsc, _ = smscs
    settings.SMPP_SOURCE_ADDR = "Settings"
    first = SmppSmsBackend(
        host="127.0.0.1", port=smsc.port, system_id="acme", password="a", source_addr="Acme"
    )
    second = SmppSmsBackend(host="127.0.0.1", port=smsc.port, system_id="other", password="b", timeout=3)
    again = SmppSmsBackend(host="127.0.0.1", port=smsc.port, system_id="acme", password="a")
    for backend in (first, second, again, first):
        assert backend.send(RenderedMessage(parts={"text": "Hi"}), Recipient(NUMBER)).sent
    assert [(b.system_id, b.password) for b in smsc.binds] == [(b"acme", b"a"), (b"other", b"b")]
    assert [p.source_addr for p in smsc.submitted] == [b"Acme", b"Settings", b"Settings", b"Acme"]
    smpp_backend.reset_connection()  # forgets both binds: the next sends bind again
    for backend in (first, second):
        assert backend.send(RenderedMessage(parts={"text": "Hi"}), Recipient(NUMBER)).sent
    assert [b.system_id for b in smsc.binds] == [b"acme", b"other", b"acme", b"other"]


def test_the_gateway_backends_take_their_url_and_token(settings):
    settings.SMS_GATEWAY_URL = settings.PUSH_GATEWAY_URL = "http://127.0.0.1:1/unused"
    fake = FakeTwilio()  # any loopback server that keeps the requests
    try:
        sms = HttpSmsBackend(url=f"{fake.url}/sms", token="sms-token")
        push = HttpPushBackend(url=f"{fake.url}/push", token="push-token")
        fake.answer = (200, {"id": "g1"})
        assert sms.send(RenderedMessage(parts={"text": "Hi"}), Recipient(NUMBER)).sent
        assert push.send(RenderedMessage(parts={"title": "T", "body": "B"}), Recipient("tok")).sent
        fake.answer = (401, {})
        refused = sms.send(RenderedMessage(parts={"text": "Hi"}), Recipient(NUMBER))
    finally:
        fake.stop()
    assert [(r["path"], r["authorization"]) for r in fake.requests[:2]] == [
        ("/sms", "Bearer sms-token"),
        ("/push", "Bearer push-token"),
    ]
    assert refused.outcome == "temporaryFailure" and refused.provider_fault


def test_an_fcm_backend_takes_its_service_account_as_text_or_file(googles, tmp_path, settings):
    google, _ = googles
    settings.FCM_SERVICE_ACCOUNT_JSON = settings.FCM_SERVICE_ACCOUNT_FILE = ""
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(google.service_account))
    for backend in (
        FcmPushBackend(service_account_json=json.dumps(google.service_account), base_url=google.base_url),
        FcmPushBackend(
            service_account_file=str(path), base_url=google.base_url, project_id="other", timeout=5
        ),
    ):
        assert backend.send(RenderedMessage(parts={"title": "T", "body": "B"}), Recipient("tok")).sent
    assert [s["path"] for s in google.sends] == [
        "/v1/projects/demo-project/messages:send",
        "/v1/projects/other/messages:send",
    ]


@pytest.mark.parametrize(
    "build, problem",
    [
        (lambda: SmppSmsBackend(port="2775"), "'port' must be an integer"),
        (lambda: SmppSmsBackend(port=0), "'port' must be from 1 to 65535"),
        (lambda: SmppSmsBackend(timeout=True), "'timeout' must be a number"),
        (lambda: SmppSmsBackend(password=1234), "'password' must be a string, not int"),
        (lambda: TwilioSmsBackend(timeout=600), "'timeout' must be from 0.1 to 60"),
        (lambda: HttpSmsBackend(url=["x"]), "'url' must be a string"),
        (lambda: FcmPushBackend(service_account_json=3), "'service_account_json' must be str or dict"),
    ],
)
def test_a_wrongly_typed_option_is_named(build, problem):
    with pytest.raises(ImproperlyConfigured, match=problem):
        build()


def test_a_wrong_option_never_shows_its_value():
    with pytest.raises(ImproperlyConfigured) as error:
        SmppSmsBackend(password=987654321)
    assert "987654321" not in str(error.value)


# --- a wrong entry named by the system check ---------------------------------------------------


@pytest.mark.parametrize(
    "entry, problem",
    [
        (
            {"name": "main", "backend": "messages.channels.sms.NoSuchBackend"},
            "'main': the backend .* cannot be imported",
        ),
        ({"name": "main", "backend": SMPP, "options": {"hots": "smsc"}}, "'main': .* takes no option 'hots'"),
        (
            {"name": "main", "backend": SMPP, "options": {"port": "2775"}},
            "'main': .*'port' must be an integer",
        ),
        ({"name": "main", "backend": SMPP, "options": "host=smsc"}, "'main': options must be an object"),
        ({"name": "main", "backend": SMPP, "ratelimit": 5}, "'main': unknown key 'ratelimit'"),
        ({"name": "main", "backend": 42}, "'main': backend must be a dotted path"),
        ({"name": "main", "rate_limit": True}, "'main': rate_limit"),
    ],
)
def test_a_wrong_sms_provider_is_named_by_the_system_check(settings, entry, problem):
    settings.SMS_PROVIDERS = [entry]
    with pytest.raises(SystemCheckError, match=f"SMS_PROVIDERS: {problem}"):
        call_command("check")


def test_a_wrong_provider_met_by_a_worker_is_a_configuration_error_not_a_type_error(settings):
    settings.PUSH_PROVIDERS = [{"name": "fcm", "backend": FCM, "options": {"project": "x"}}]
    with pytest.raises(ImproperlyConfigured, match="PUSH_PROVIDERS: 'fcm': .* takes no option 'project'"):
        channel("push").backend()


def test_a_file_backend_takes_no_options_and_a_good_list_passes_the_check(settings):
    settings.SMS_PROVIDERS = [
        {
            "name": "smpp",
            "backend": SMPP,
            "options": {"host": "smsc.example", "port": 2775},
            "rate_limit": 10,
        },
        {
            "name": "twilio",
            "backend": "messages.channels.twilio_sms.TwilioSmsBackend",
            "options": {"from_": "+1"},
        },
    ]
    settings.PUSH_PROVIDERS = [{"name": "file", "backend": "messages.channels.push.FilePushBackend"}]
    call_command("check")
    settings.PUSH_PROVIDERS = [
        {"name": "file", "backend": "messages.channels.push.FilePushBackend", "options": {"url": "x"}}
    ]
    with pytest.raises(SystemCheckError, match="takes no option 'url' \\(its options: none\\)"):
        call_command("check")


def test_a_provider_list_that_is_no_list_is_named(settings):
    settings.PUSH_PROVIDERS = {"name": "main"}
    with pytest.raises(SystemCheckError, match="PUSH_PROVIDERS: must be a list"):
        call_command("check")


def test_sms_providers_from_the_environment_reach_the_check(tmp_path):
    """As an operator sets it: JSON in the environment; a wrong option stops `manage.py check`."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PROVIDERS") and k != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="campaign.settings", VAR_DIR=str(tmp_path))
    good = [smpp_provider("operator", 2775, rate_limit=50)]
    bad = [
        {
            "name": "twilio",
            "backend": "messages.channels.twilio_sms.TwilioSmsBackend",
            "options": {"from": "+1"},
        }
    ]
    checks = [
        subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=root,
            env={**env, "SMS_PROVIDERS": json.dumps(providers)},
            capture_output=True,
            text=True,
        )
        for providers in (good, bad)
    ]
    assert checks[0].returncode == 0, checks[0].stderr
    assert checks[1].returncode != 0
    assert "SMS_PROVIDERS: 'twilio': " in checks[1].stderr and "takes no option 'from'" in checks[1].stderr
