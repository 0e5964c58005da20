"""Email through Django's email backends (SMTP in production), one connection reused across sends."""

from __future__ import annotations

import re
import smtplib
import socket
import threading
from email.utils import formataddr, make_msgid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from messages.channels import Recipient, RenderedMessage, SendResult

TEMPORARY, PERMANENT, SENT = "temporaryFailure", "permanentFailure", "sent"


def classify_smtp_error(error: Exception) -> tuple[str, str]:
    """(outcome, provider answer) for an exception raised while sending."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, answer = next(iter(error.recipients.values()))
        return (PERMANENT if 500 <= code < 600 else TEMPORARY), f"{code} {_text(answer)}"
    if isinstance(error, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return (
            PERMANENT if 500 <= error.smtp_code < 600 else TEMPORARY
        ), f"{error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPResponseException):
        # A 5xx here (e.g. on MAIL FROM or AUTH) says more about our server than the recipient: retry.
        return TEMPORARY, f"{error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPException | OSError | socket.timeout):
        return TEMPORARY, f"{error.__class__.__name__}: {error}"
    raise error


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def header_value(value: str) -> str:
    """A rendered value one header line can carry: each control character (CR, LF, tab...) from event
    or profile data becomes a space, so the message goes out instead of failing on a bad header."""
    return _CONTROL_CHARACTERS.sub(" ", value)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class EmailChannel:
    """Keeps one open connection per thread and reopens it once if the server dropped it."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = get_connection(fail_silently=False)
            connection.open()
            self._local.connection = connection
        return connection

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # closing a broken connection may fail again; nothing to do
                pass

    def build(self, rendered: RenderedMessage, recipient: Recipient) -> EmailMultiAlternatives:
        parts = rendered.parts
        sender = (
            formataddr((header_value(rendered.from_name), rendered.from_address))
            if rendered.from_address
            else (settings.DEFAULT_FROM_EMAIL)
        )
        domain = (rendered.from_address or settings.DEFAULT_FROM_EMAIL).rpartition("@")[2] or None
        headers = {"Message-ID": make_msgid(domain=domain), **rendered.headers}
        message = EmailMultiAlternatives(
            subject=header_value(parts.get("subject", "")),
            body=parts.get("text", ""),
            from_email=sender,
            to=[
                formataddr((header_value(recipient.name), recipient.address))
                if recipient.name
                else recipient.address
            ],
            reply_to=[rendered.reply_to] if rendered.reply_to else None,
            headers=headers,
        )
        if parts.get("html"):
            message.attach_alternative(parts["html"], "text/html")
        return message

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        message = self.build(rendered, recipient)
        for attempt in (1, 2):
            reused = getattr(self._local, "connection", None) is not None
            try:
                connection = self._connection()
                connection.send_messages([message])
                return SendResult(
                    SENT,
                    provider_message_id=message.extra_headers["Message-ID"],
                    provider_response="250 accepted",
                )
            except smtplib.SMTPServerDisconnected as error:
                self.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle connection: one fresh try
                outcome, answer = classify_smtp_error(error)
                return SendResult(outcome, provider_response=answer)
            except Exception as error:
                self.close()
                outcome, answer = classify_smtp_error(error)
                return SendResult(outcome, provider_response=answer)
        raise AssertionError("unreachable")
