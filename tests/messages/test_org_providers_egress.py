"""Where an organization's provider may send the product's requests (messages.provider_kinds,
campaign.network): never with the machine's credentials, never to a host other than a well-known
service's own, never to a private address a host name resolves to later (a DNS rebinding after the
form was saved), never following a redirect, never keeping another host's answer; and what an
administrator types that would only fail later is a form error, never a 500."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, get_connection
from django.urls import reverse

from campaign import network
from campaign.models import ProofRecipient
from messages import org_providers, provider_kinds, providers
from messages.channels import Recipient, RenderedMessage, backend_for
from messages.channels import email as email_channel
from messages.channels import smpp as smpp_channel
from messages.channels.fcm import FcmClient
from messages.channels.http import OrganizationGateway, post_json
from messages.channels.sms import sms_payload
from messages.models import OrganizationProvider
from messages.provider_kinds import KINDS, FieldProblem
from tests.fcm import FakeGoogle
from tests.smtp import SmtpServer

pytestmark = pytest.mark.django_db
ADD = reverse("admin:transactional_organizationprovider_add")
SMS = RenderedMessage(parts={"text": "Your code: 4242"})


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = False
    backend_for.cache_clear()
    providers.forget_state()
    yield
    backend_for.cache_clear()
    providers.forget_state()


@pytest.fixture
def dns(monkeypatch):
    """Names answered by the test (`dns["gw.example.org"] = "127.0.0.1"`); any other name does not
    resolve (no lookup leaves the machine). `dns.asked` lists the names looked up."""
    real = socket.getaddrinfo

    class Zone(dict):
        asked: list[str] = []

    zone = Zone()
    zone.asked = []

    def lookup(host, port, family=0, type=0, proto=0, flags=0):
        zone.asked.append(str(host))
        try:
            socket.inet_pton(socket.AF_INET, str(host))
            return real(host, port, family, type, proto, flags)
        except OSError:
            pass
        if host not in zone:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (zone[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return zone


def errors_of(response) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was accepted"
    return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


def form(kind: str, **fields: str) -> dict[str, str]:
    return {
        "name": kind.replace("_", "-"),
        "kind": kind,
        "position": "0",
        "rate_limit": "0",
        "enabled": "on",
        **{f"{kind}__{k}": v for k, v in fields.items()},
    }


class Server:
    """A loopback HTTP server: `answers[path]` is (status, headers, body); every request recorded."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body.decode(errors="replace")}
                )
                status, headers, data = server.answers.get(self.path, (200, {}, b'{"id": "m-1"}'))
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # noqa: N815

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        self.thread = threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.shutdown()
        self.http.server_close()

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]


# --- 1. Amazon SES: the organization's keys or nothing ------------------------------------------


def test_amazon_ses_without_keys_is_a_form_error(client, administrator):
    client.force_login(administrator)
    errors = errors_of(client.post(ADD, form("amazon_ses", region_name="eu-west-1")))
    assert "required" in " ".join(errors["amazon_ses__aws_access_key_id"])
    assert "required" in " ".join(errors["amazon_ses__aws_secret_access_key"])
    assert not OrganizationProvider.objects.exists()


def test_amazon_ses_is_never_built_without_the_organizations_keys(monkeypatch, organization):
    built: list[Any] = []
    monkeypatch.setattr(email_channel, "DjangoMailBackend", lambda *a, **k: built.append((a, k)))
    kind = KINDS["amazon_ses"]
    for options, secrets in (
        ({"region_name": "eu-west-1"}, {}),
        ({"aws_access_key_id": "AKIAORG"}, {}),
        ({"aws_access_key_id": ""}, {"aws_secret_access_key": "org-secret"}),
    ):
        with pytest.raises(ImproperlyConfigured, match="access key"):
            kind.build(kind, options, secrets, provider_kinds.BuildContext(1))
    assert built == []
    # A row saved before the rule (or by hand) holds its organization's sends back: no machine keys.
    OrganizationProvider.objects.create(
        organization=organization, name="ses", kind="amazon_ses", channel="email", options={}
    )
    assert isinstance(backend_for("email", organization.pk), org_providers.Unbuildable)


def test_amazon_ses_requests_are_bounded_and_go_to_aws_only(settings):
    params = provider_kinds.ses_params(
        {"aws_access_key_id": "AKIAORG", "region_name": "eu-west-1", "timeout": 7.0},
        {"aws_secret_access_key": "org-secret"},
    )
    assert params["session_params"] == {
        "region_name": "eu-west-1",
        "aws_access_key_id": "AKIAORG",
        "aws_secret_access_key": "org-secret",
    }
    config = params["client_params"]["config"]
    assert (config["connect_timeout"], config["read_timeout"]) == (7.0, 7.0)
    assert config["retries"]["total_max_attempts"] == 2 and "endpoint_url" not in params["client_params"]
    endpoint = KINDS["amazon_ses"].field("endpoint_url")
    assert endpoint.check("https://email.eu-west-1.amazonaws.com") == "https://email.eu-west-1.amazonaws.com"
    for url in ("https://ses.attacker.example", "https://email.eu-west-1.amazonaws.com.attacker.example"):
        with pytest.raises(FieldProblem, match="service's own"):
            endpoint.check(url)
        with pytest.raises(ImproperlyConfigured):
            provider_kinds.ses_params(
                {"aws_access_key_id": "AKIAORG", "endpoint_url": url}, {"aws_secret_access_key": "s"}
            )
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True  # development: a local fake
    assert endpoint.check("http://127.0.0.1:4566") == "http://127.0.0.1:4566"


# --- 2. Well-known services at their own URLs; no redirect; no other host's answer kept --------


@pytest.mark.parametrize(
    ("kind", "name", "official", "other"),
    [
        ("twilio", "base_url", "https://api.twilio.com", "https://twilio.attacker.example"),
        ("fcm", "base_url", "https://fcm.googleapis.com", "https://fcm.googleapis.com.attacker.example"),
        (
            "mailgun",
            "api_url",
            "https://api.eu.mailgun.net/v3/",
            "https://api.mailgun.net.attacker.example/v3/",
        ),
        ("postmark", "api_url", "https://api.postmarkapp.com/", "https://127.0.0.1/"),
        ("sendgrid", "api_url", "https://api.sendgrid.com/v3/", "https://api.sendgrid.com@evil.example/"),
        ("brevo", "api_url", "https://api.brevo.com/v3/", "https://api.brevo.com:8443/v3/"),
    ],
)
def test_a_well_known_services_url_is_its_own_unless_private_targets_are_allowed(
    settings, kind, name, official, other
):
    field = KINDS[kind].field(name)
    assert field.check(official) == official
    assert field.check("") == field.default  # the service's own
    with pytest.raises(FieldProblem):
        field.check(other)
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True
    assert field.check("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/"


def test_the_admin_refuses_another_twilio_host(client, administrator):
    client.force_login(administrator)
    errors = errors_of(
        client.post(
            ADD,
            form(
                "twilio",
                account_sid="AC" + "1" * 32,
                auth_token="t",
                base_url="https://twilio.attacker.example",
            ),
        )
    )
    assert "service's own" in " ".join(errors["twilio__base_url"])


def test_a_service_accounts_token_uri_must_be_googles(settings):
    google = FakeGoogle()
    google.stop()
    field = KINDS["fcm"].field("service_account_json")
    elsewhere = json.dumps({**google.service_account, "token_uri": "https://tokens.attacker.example/token"})
    with pytest.raises(FieldProblem, match="token_uri"):
        field.check(elsewhere)
    googles = json.dumps({**google.service_account, "token_uri": "https://oauth2.googleapis.com/token"})
    assert field.check(googles) == googles
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True
    assert field.check(json.dumps(google.service_account))  # the loopback fake, in development


def test_a_json_gateway_follows_no_redirect_and_keeps_no_bearer_elsewhere():
    with Server() as server:
        server.answers["/send"] = (302, {"Location": f"http://127.0.0.1:{server.port}/elsewhere"}, b"moved")
        result = post_json(f"http://127.0.0.1:{server.port}/send", {"to": "x"}, token="gw-token")
    assert result.outcome == "temporaryFailure" and result.provider_fault
    assert result.provider_response == "302 redirect not followed"
    assert server.paths() == ["/send"]


def test_a_failed_token_exchange_keeps_its_status_and_code_only(settings):
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True
    google = FakeGoogle()
    google.stop()
    echoed = json.dumps({"error": "invalid_grant", "error_description": "you sent: ECHOED-ASSERTION"})
    with Server() as server:
        server.answers["/token"] = (400, {"Content-Type": "application/json"}, echoed.encode())
        server.answers["/moved"] = (302, {"Location": f"http://127.0.0.1:{server.port}/token"}, b"")
        results = []
        for path in ("/token", "/moved"):
            client = FcmClient(
                service_account_json={
                    **google.service_account,
                    "token_uri": f"http://127.0.0.1:{server.port}{path}",
                },
                service_account_file="",
                project_id="",
                base_url=f"http://127.0.0.1:{server.port}",
                timeout=5,
            )
            results.append(client.send({"message": {"token": "t"}}))
    refused, moved = results
    assert refused.outcome == "temporaryFailure" and "HTTP 400" in refused.provider_response
    assert "invalid_grant" in refused.provider_response and "ECHOED" not in refused.provider_response
    assert "HTTP 302" in moved.provider_response and "ECHOED" not in moved.provider_response
    assert server.paths() == ["/token", "/moved"]  # the redirect was not followed


# --- 3. Hosts checked at each connection, connected to the address checked ----------------------


def test_the_form_names_no_address_an_internal_name_resolves_to(dns):
    dns["intranet.example.org"] = "10.1.2.3"
    problem = network.reachable_host_problem("intranet.example.org", 25, allow_private=False)
    assert "private, loopback or link-local" in problem and "10.1.2.3" not in problem


def test_a_json_gateway_rebound_to_a_private_address_is_not_reached(dns, settings):
    with Server() as server:
        gateway = OrganizationGateway(
            url=f"http://gw.example.org:{server.port}/send", token="gw-token", payload=sms_payload
        )
        dns["gw.example.org"] = "127.0.0.1"  # public when the form was saved, loopback now
        refused = gateway.send(SMS, Recipient("+33612345678"))
        settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True  # the same code path, loopback allowed
        sent = gateway.send(SMS, Recipient("+33612345678"))
    assert refused.outcome == "temporaryFailure" and "private" in refused.provider_response
    assert sent.outcome == "sent" and sent.provider_message_id == "m-1"
    (request,) = server.requests  # the checked address, the Host header naming the gateway
    assert request["headers"]["Host"] == f"gw.example.org:{server.port}"
    assert request["headers"]["Authorization"] == "Bearer gw-token"


def test_an_organizations_smtp_connects_to_the_address_it_checked(dns, settings):
    with SmtpServer() as smtp:
        options = {"host": "mail.example.org", "port": smtp.port, "use_tls": False, "timeout": 5.0}
        dns["mail.example.org"] = "127.0.0.1"
        connection = get_connection("messages.channels.email.OrganizationSmtpBackend", **options)
        with pytest.raises(network.HostRefused):
            connection.open()
        settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True
        sent = connection.send_messages([EmailMessage("s", "t", "a@example.com", ["b@example.com"])])
        connection.close()
        (received,) = smtp.mailbox.wait_for(1)
    assert sent == 1 and received.recipients == ["b@example.com"]


def test_an_organizations_smpp_bind_connects_to_the_address_it_checked(dns, settings):
    dns["smsc.example.org"] = "10.0.0.5"
    settings.SMPP_HOST = "smsc.example.org"  # the installation's own SMSC, same name: no pass
    with pytest.raises(network.HostRefused):
        smpp_channel.connect_address("smsc.example.org", 2775, organizations=True)
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True
    assert smpp_channel.connect_address("smsc.example.org", 2775, organizations=True) == "10.0.0.5"
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = False
    # The installation's own SMSC (its settings) may be anywhere.
    assert smpp_channel.connect_address("smsc.example.org", 2775, organizations=False) == "10.0.0.5"


def test_an_smpp_send_to_a_rebound_host_fails_without_connecting(dns, settings):
    dns["smsc.example.org"] = "127.0.0.1"
    backend = smpp_channel.SmppSmsBackend(  # an organization's provider's bind
        host="smsc.example.org",
        port=1,
        system_id="org",
        password="",
        system_type="",
        timeout=2,
        owner=smpp_channel.BindOwner(1, "smpp:org1:1", "own-smsc"),
    )
    try:
        result = backend.send(SMS, Recipient("+33612345678"))
    finally:
        smpp_channel.reset_connection()
    assert result.outcome == "temporaryFailure" and "private" in result.provider_response


# --- 4. SMTP: TLS by default, no password in clear ---------------------------------------------


def test_smtp_offers_starttls_by_default_and_sends_no_password_in_clear(client, administrator, dns):
    client.force_login(administrator)
    page = client.get(ADD)
    assert page.context["adminform"].form.fields["smtp__use_tls"].initial is True
    data = form("smtp", host="8.8.8.8", port="587", username="org", password="pw", timeout="5")
    errors = errors_of(client.post(ADD, data))
    assert "only over TLS" in " ".join(errors["smtp__use_tls"])
    with pytest.raises(ImproperlyConfigured, match="only over TLS"):
        KINDS["smtp"].build(
            KINDS["smtp"],
            {"host": "8.8.8.8", "use_tls": False},
            {"password": "pw"},
            provider_kinds.BuildContext(1),
        )


# --- 5. Mailgun's sender domain: a domain, never looked up ---------------------------------------


def test_mailgun_sender_domain_is_a_domain_not_looked_up(dns):
    field = KINDS["mailgun"].field("sender_domain")
    assert field.check("MG.Example.COM") == "mg.example.com"
    with pytest.raises(FieldProblem):
        field.check("not a domain!")
    checked = provider_kinds.check_options(KINDS["mailgun"], {"sender_domain": "mg.example.com"})
    assert "sender_domain" not in checked.problems and "mg.example.com" not in dns.asked


# --- 6. No installation ANYMAIL_* setting in an organization's email provider -------------------


def test_no_installation_anymail_setting_reaches_an_organizations_provider(settings):
    settings.ANYMAIL = {
        "MAILGUN_SENDER_DOMAIN": "installation.example",
        "MAILGUN_API_URL": "https://mailgun.installation.example/v3/",
        "POSTMARK_API_URL": "https://postmark.installation.example/",
        "POSTMARK_MESSAGE_STREAM": "installation-stream",
        "DEBUG_API_REQUESTS": True,
    }
    kind = KINDS["mailgun"]
    backend = kind.build(kind, {}, {"api_key": "org-key"}, provider_kinds.BuildContext(1))
    mailgun = get_connection(backend.backend_path, **backend.options)
    assert mailgun.sender_domain is None and mailgun.api_url == "https://api.mailgun.net/v3/"
    assert mailgun.api_key == "org-key" and mailgun.debug_api_requests is False
    kind = KINDS["postmark"]
    backend = kind.build(kind, {}, {"server_token": "org-token"}, provider_kinds.BuildContext(1))
    postmark = get_connection(backend.backend_path, **backend.options)
    assert postmark.api_url == "https://api.postmarkapp.com/" and postmark.message_stream is None


# --- 7. Admin input that would fail later: a form error, never a 500 ---------------------------


def test_a_deeply_nested_service_account_is_a_form_error(client, administrator):
    client.force_login(administrator)
    errors = errors_of(client.post(ADD, form("fcm", service_account_json="[" * 10000)))
    assert "nested too deeply" in " ".join(errors["fcm__service_account_json"])


def test_a_service_account_that_cannot_be_built_is_a_form_error(client, administrator, settings):
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True  # the fake's loopback token_uri
    google = FakeGoogle()
    google.stop()
    client.force_login(administrator)
    broken_key = json.dumps({**google.service_account, "private_key": "-----BEGIN PRIVATE KEY-----\nnope"})
    no_project = {k: v for k, v in google.service_account.items() if k != "project_id"}
    for account in (broken_key, json.dumps(no_project)):
        data = form("fcm", service_account_json=account, base_url="http://127.0.0.1:1", timeout="5")
        errors = errors_of(client.post(ADD, data))
        assert "FCM" in " ".join(errors["__all__"]) and "nope" not in " ".join(errors["__all__"])
    assert not OrganizationProvider.objects.exists()


def test_send_a_test_of_an_unbuildable_provider_is_refused_not_a_500(client, administrator, organization):
    ProofRecipient.objects.create(organization=organization, kind="email", value="qa@example.com")
    provider = OrganizationProvider.objects.create(
        organization=organization, name="ses", kind="amazon_ses", channel="email", options={}
    )
    client.force_login(administrator)
    url = reverse("admin:transactional_organizationprovider_test", args=[provider.pk])
    page = client.post(url, {"recipient": "qa@example.com"})
    assert page.status_code == 200 and "cannot be built" in page.content.decode()


def test_a_row_saved_before_the_rules_holds_its_sends_back(organization):
    """Saved when any https URL was accepted: not built, its organization's sends wait (see the admin)."""
    OrganizationProvider.objects.create(
        organization=organization,
        name="twilio",
        kind="twilio",
        channel="sms",
        options={"account_sid": "AC" + "1" * 32, "base_url": "https://twilio.attacker.example"},
    )
    backend = backend_for("sms", organization.pk)
    assert isinstance(backend, org_providers.Unbuildable)
    result = backend.send(SMS, Recipient("+33612345678"))
    assert result.outcome == "temporaryFailure" and "cannot be built" in result.provider_response
