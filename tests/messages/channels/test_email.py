"""The email channel: its own bytes (written faster than Django's default, and the same email), and
how an email service provider's failures are classified."""

from __future__ import annotations

import email
import email.policy
import random
import socket
import string
import threading
import time
from email._policybase import compat32

import pytest
import requests
from django.core.mail import EmailMultiAlternatives

from messages.channels.email import SHORT_HEADERS_AS_WRITTEN, PreparedEmail

HEADERS = [
    ("Subject", "Jack, your cart is waiting"),
    ("Subject", "Jack, your cart is waiting " + "x" * 80),  # folded
    ("Subject", "Ça va, Jack ?"),  # encoded
    ("Subject", " leading and trailing "),
    ("Subject", "two  spaces\tand a tab"),
    ("From", '"Shop, Inc." <shop@example.com>'),
    ("To", "jack@example.com"),
    ("Content-Type", 'multipart/alternative; boundary="===============0123=="'),
    ("List-Unsubscribe", "<https://example.com/u/1.abcdef?e=" + "k" * 70 + ">"),
    ("Subject", ""),
]


def test_short_headers_are_written_as_compat32_folds_them():
    fast, reference = SHORT_HEADERS_AS_WRITTEN.clone(linesep="\r\n"), compat32.clone(linesep="\r\n")
    samples = list(HEADERS)
    characters = string.ascii_letters + string.digits + " \t,;:<>\"'=()[]@.-_/é"
    generator = random.Random(14)
    for _ in range(5000):
        length = generator.randint(0, 100)
        samples.append(("Subject", "".join(generator.choice(characters) for _ in range(length))))
    for name, value in samples:
        assert fast.fold_binary(name, value) == reference.fold_binary(name, value), (name, value)


def compose(cls):
    message = cls(
        subject="Jack, your cart is waiting",
        body="Hello Jack",
        from_email='"Shop" <shop@example.com>',
        to=["jack@example.com"],
        headers={"Message-ID": "<1@example.com>", "Date": "Sun, 29 Nov 2026 17:00:00 -0000"},
    )
    message.attach_alternative("<p>Hello Jack</p>", "text/html")
    return message


def test_a_prepared_email_is_the_same_email_with_a_boundary_of_its_own():
    ours = [
        email.message_from_bytes(compose(PreparedEmail).message().as_bytes(), policy=email.policy.default)
    ]
    ours.append(
        email.message_from_bytes(compose(PreparedEmail).message().as_bytes(), policy=email.policy.default)
    )
    django = email.message_from_bytes(
        compose(EmailMultiAlternatives).message().as_bytes(), policy=email.policy.default
    )
    for parsed in ours:
        assert [(k, str(v)) for k, v in parsed.items() if k != "Content-Type"] == [
            (k, str(v)) for k, v in django.items() if k != "Content-Type"
        ]
        assert [(part.get_content_type(), part.get_content()) for part in parsed.iter_parts()] == [
            (part.get_content_type(), part.get_content()) for part in django.iter_parts()
        ]
        assert parsed.get_boundary() not in "".join(part.get_content() for part in parsed.iter_parts())
    assert ours[0].get_boundary() != ours[1].get_boundary()


@pytest.mark.parametrize(
    "status, outcome, fault",
    [
        (None, "temporaryFailure", True),  # no answer
        (503, "temporaryFailure", True),
        (401, "temporaryFailure", True),  # our credentials refused
        (429, "temporaryFailure", True),
        (422, "permanentFailure", False),  # the message's fault
    ],
)
def test_an_email_service_providers_api_failure_is_classified(status, outcome, fault):
    from anymail.exceptions import AnymailAPIError

    from messages.channels.email import classify_provider_error

    response = requests.Response()  # as anymail's backends raise it: the ESP's answer attached
    response.status_code, response.reason, response._content = status, "refused", b"{}"
    error = AnymailAPIError("refused", status_code=status, response=response if status else None)
    result = classify_provider_error(error)
    assert result is not None and result.outcome == outcome and result.provider_fault is fault


def test_an_address_anymail_refuses_before_any_call_is_no_fault_of_the_provider():
    from anymail.exceptions import AnymailInvalidAddress, AnymailRecipientsRefused

    from messages.channels.email import classify_provider_error

    assert not classify_provider_error(AnymailInvalidAddress("not an address")).provider_fault
    assert not classify_provider_error(AnymailRecipientsRefused()).provider_fault


# --- an unknown outcome: the message written, its answer lost ------------------------------------


def _smtp_send(address: str):
    from messages.channels import Recipient, RenderedMessage
    from messages.channels.email import DjangoMailBackend

    rendered = RenderedMessage(parts={"subject": "Hi", "text": "Hello"}, from_address="shop@example.com")
    return DjangoMailBackend().send(rendered, Recipient(address))


def test_an_smtp_timeout_after_data_is_an_unknown_outcome_and_one_before_is_not(settings, smtp_email):
    """Timed out waiting for the answer to the message itself: the server may have taken it (no
    failover). Timed out on RCPT TO: nothing was sent (safe to try the next provider)."""
    settings.EMAIL_TIMEOUT = 1
    smtp_email.data_seconds = 3
    result = _smtp_send("jack@example.com")
    assert result.outcome == "temporaryFailure" and result.provider_fault and result.outcome_unknown
    smtp_email.data_seconds = 0
    smtp_email.slow_seconds = 3
    result = _smtp_send("slow@example.com")
    assert result.outcome == "temporaryFailure" and result.provider_fault and not result.outcome_unknown


def test_an_smtp_backends_bound_is_four_exchanges_of_its_timeout(settings):
    from messages.channels.email import DjangoMailBackend

    settings.EMAIL_TIMEOUT = 7
    smtp = "django.core.mail.backends.smtp.EmailBackend"
    assert DjangoMailBackend(smtp).max_send_seconds == 4 * 7 + 5
    assert DjangoMailBackend(smtp, {"timeout": 3}).max_send_seconds == 4 * 3 + 5
    assert DjangoMailBackend("django.core.mail.backends.locmem.EmailBackend").max_send_seconds <= 1


def test_an_email_apis_bound_is_its_own_requests_timeout_not_the_installations(settings):
    """An organization's anymail provider passes `requests_timeout`: its bound follows it, whatever
    the installation's ANYMAIL REQUESTS_TIMEOUT (a number, or a "connect,read" pair from the env)."""
    from messages.channels.email import DjangoMailBackend

    postmark = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"REQUESTS_TIMEOUT": "3.05,27"}
    assert DjangoMailBackend(postmark).max_send_seconds == pytest.approx(3.05 + 27 + 1)
    assert DjangoMailBackend(postmark, {"requests_timeout": 20}).max_send_seconds == 21
    settings.ANYMAIL = {"REQUESTS_TIMEOUT": "not a number"}
    assert DjangoMailBackend(postmark).max_send_seconds == 31


@pytest.mark.parametrize(
    "cause, unknown",
    [
        (requests.ReadTimeout("read timed out"), True),  # the request went out, no answer
        (requests.ConnectTimeout("connect timed out"), False),
        (requests.ConnectionError("refused"), False),
    ],
)
def test_an_email_service_providers_lost_answer_is_an_unknown_outcome(cause, unknown):
    from anymail.exceptions import AnymailRequestsAPIError

    from messages.channels.email import classify_provider_error

    try:
        try:
            raise cause
        except requests.RequestException as error:
            raise AnymailRequestsAPIError("Error posting to the ESP") from error
    except AnymailRequestsAPIError as error:
        result = classify_provider_error(error)
    assert result is not None and result.provider_fault and result.outcome_unknown is unknown


def test_an_smtp_server_answering_a_byte_at_a_time_is_cut_at_the_sends_bound():
    """Each byte of RCPT's answer comes within the socket's timeout and the answer never ends: the
    conversation is cut at the backend's bound (4 x 0.25 + 5 s), not held past the claim, and the
    message is not sent."""
    from messages.channels import Recipient, RenderedMessage
    from messages.channels.email import DjangoMailBackend

    stop = threading.Event()

    def serve(server: socket.socket) -> None:
        connection, _ = server.accept()
        ends = time.monotonic() + 15  # without the cut, the test fails rather than hangs
        with connection, connection.makefile("rb") as lines:
            connection.sendall(b"220 slow.example.com ESMTP\r\n")
            for line in lines:
                if line.upper().startswith((b"EHLO", b"HELO", b"MAIL")):
                    connection.sendall(b"250 ok\r\n")
                elif line.upper().startswith(b"RCPT"):
                    while not stop.wait(0.1) and time.monotonic() < ends:
                        try:
                            connection.sendall(b"2")
                        except OSError:
                            return
                    return

    with socket.create_server(("127.0.0.1", 0)) as server:
        thread = threading.Thread(target=serve, args=(server,), daemon=True)
        thread.start()
        backend = DjangoMailBackend(
            "django.core.mail.backends.smtp.EmailBackend",
            {"host": "127.0.0.1", "port": server.getsockname()[1], "timeout": 0.25},
        )
        assert backend.max_send_seconds == 6
        started = time.monotonic()
        result = backend.send(
            RenderedMessage(parts={"subject": "s", "text": "t"}, from_address="a@example.com"),
            Recipient("b@example.com"),
        )
        took = time.monotonic() - started
        stop.set()
        thread.join(5)
    assert result.outcome == "temporaryFailure" and not result.sent and 5.5 < took < 9
