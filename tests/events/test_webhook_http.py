"""The webhooks' way out (events.webhook_http): no private target, checked on save and again at
each send after resolution (DNS rebinding), bounds on the URL and the wait."""

from __future__ import annotations

import socket

import pytest

from events import webhook_http
from events.webhook_http import TargetRefused, check, post, refused_address
from tests.webhook_receiver import Receiver


@pytest.fixture
def resolves_to(monkeypatch):
    """Make every host name resolve to the given address (what a hostile DNS answer does)."""

    def install(address: str) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET

        def fake(host, port, *args, **kwargs):
            return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

        monkeypatch.setattr(webhook_http.socket, "getaddrinfo", fake)

    return install


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(address):
    assert refused_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert not refused_address(address)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/hooks", "https://[::1]/x", "http://169.254.169.254/latest/meta-data"]
)
def test_a_private_literal_is_refused_on_save(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(TargetRefused, match="private, loopback or link-local"):
        check(url)


def test_a_host_name_resolving_to_loopback_is_refused(resolves_to, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    resolves_to("127.0.0.1")
    with pytest.raises(TargetRefused, match="hooks.example.com resolves to 127.0.0.1"):
        check("https://hooks.example.com/receive")


def test_a_host_that_resolved_public_on_save_and_loopback_at_send_time_is_not_reached(resolves_to, settings):
    """DNS rebinding: the check is made again at the send, on the address then connected to."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        url = f"http://hooks.example.com:{port}/hooks"
        resolves_to("93.184.216.34")
        check(url)  # saved
        resolves_to("127.0.0.1")  # then the name points at the machine itself
        answer = post(url, body=b"{}", headers={})
        assert receiver.received == []
    assert answer.status_code is None and "resolves to 127.0.0.1" in answer.error


def test_the_setting_allows_a_loopback_receiver_reached_by_name(resolves_to, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    with Receiver() as receiver:
        resolves_to("127.0.0.1")
        port = receiver.server.server_address[1]
        answer = post(f"http://receiver.test:{port}/hooks?a=1", body=b"{}", headers={"X-Test": "1"})
        [got] = receiver.received
    assert answer.succeeded and got.path == "/hooks?a=1" and got.headers["host"] == f"receiver.test:{port}"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "https://"),
        ("https:///nohost", "https://"),
        ("https://user:pw@example.com/", "user name"),
        ("https://example.com:99999/", "Not a URL"),
    ],
)
def test_urls_that_are_not_http_targets_are_refused(url, reason):
    with pytest.raises(TargetRefused, match=reason):
        check(url)


def test_the_url_length_is_bounded(settings):
    settings.WEBHOOK_URL_MAX_LENGTH = 40
    with pytest.raises(TargetRefused, match="longer than 40"):
        check("https://example.com/" + "a" * 30)


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS, settings.WEBHOOK_TIMEOUT_SECONDS = True, 0.3
    with Receiver() as receiver:
        receiver.released.clear()  # holds its answer
        answer = post(receiver.url, body=b"{}", headers={})
        receiver.released.set()
    assert answer.status_code is None and "timed out" in answer.error


def test_a_redirect_is_not_followed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    with Receiver() as receiver:
        receiver.status = 307
        answer = post(receiver.url, body=b"{}", headers={})
    assert not answer.succeeded and answer.status_code == 307


def certificate_for(name: str, tmp_path):
    """A self-signed certificate for `name` and its key, as PEM files."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_receiver(tmp_path):
    """A receiver speaking TLS with a certificate for `hooks.test` only."""
    import ssl

    cert_file, key_file = certificate_for("hooks.test", tmp_path)
    with Receiver() as receiver:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
        yield receiver, cert_file


def trusting(monkeypatch, cert_file) -> None:
    """The sender trusts the test certificate (as it trusts the system's authorities)."""
    import ssl

    real = ssl.create_default_context
    monkeypatch.setattr(webhook_http.ssl, "create_default_context", lambda: real(cafile=str(cert_file)))


def test_https_reaches_the_checked_address_and_verifies_the_host_name(
    tls_receiver, resolves_to, monkeypatch, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver, cert_file = tls_receiver
    trusting(monkeypatch, cert_file)
    resolves_to("127.0.0.1")
    port = receiver.server.server_address[1]
    answer = post(f"https://hooks.test:{port}/in", body=b"{}", headers={})
    assert answer.succeeded, answer.error
    [got] = receiver.received
    assert got.headers["host"] == f"hooks.test:{port}"


def test_https_refuses_a_certificate_for_another_name(tls_receiver, resolves_to, monkeypatch, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver, cert_file = tls_receiver
    trusting(monkeypatch, cert_file)
    resolves_to("127.0.0.1")
    port = receiver.server.server_address[1]
    answer = post(f"https://elsewhere.test:{port}/in", body=b"{}", headers={})
    assert answer.status_code is None and "certificate" in answer.error.lower()
    assert receiver.received == []
