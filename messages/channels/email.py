"""The email channel: subject, HTML and text parts; the `email` key of the API; the profile's email
address; CSS inlined and a text part derived from the HTML; proofs to test profiles, allow-listed
addresses and domains; sent through Django's email backends (SMTP in production), one connection
reused across sends."""

from __future__ import annotations

import re
import secrets
import smtplib
import socket
import threading
from email._policybase import Compat32
from email.utils import formataddr, make_msgid
from typing import Any

import css_inline
import inscriptis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends import smtp as smtp_backend
from django.core.validators import EmailValidator
from django.utils.module_loading import import_string

from campaign import addresses, bounds, network, senders
from campaign.models import Organization, Profile
from messages.channels import (
    Channel,
    ChannelBackend,
    Part,
    Recipient,
    RecipientError,
    RecipientKey,
    RenderedMessage,
    SendResult,
    checked_options,
)

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


# Django's backends that keep the message in the process (tests, development): nothing to wait for.
IN_PROCESS_BACKENDS = frozenset(
    {
        "django.core.mail.backends.locmem.EmailBackend",
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.dummy.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
        "campaign.email_files.EmailBackend",
        "anymail.backends.test.EmailBackend",
    }
)


def provider_message_id(message: Any) -> str:
    """The id an email service provider gave the message (anymail's `anymail_status`, joined to its
    later bounces and complaints: messages.provider_events); else the Message-ID header (SMTP)."""
    status = getattr(message, "anymail_status", None)
    if status is not None and status.message_id is not None:
        return str(status.message_id)
    return str(message.extra_headers["Message-ID"])


def accepted(message: Any) -> str:
    """The provider's answer to a send it took: SMTP's 250, or anymail's status (e.g. `queued`)."""
    status = getattr(message, "anymail_status", None)
    if status is not None and status.status:
        return f"accepted by the provider: {', '.join(sorted(status.status))}"
    return "250 accepted"


def classify_provider_error(error: Exception) -> SendResult | None:
    """What an anymail error means for the send; None for another exception."""
    from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused

    if isinstance(error, AnymailRecipientsRefused):
        return SendResult(PERMANENT, provider_response=f"refused by the provider: {str(error)[:500]}")
    if isinstance(error, AnymailError):
        status = getattr(error, "status_code", None)
        # A 4xx other than authentication and throttling is this message's, for good; the rest
        # (a 5xx, no answer, our credentials refused, too many requests) may pass later.
        answer = f"{status or ''} {str(error)[:500]}".strip()
        if status is not None and 400 <= status < 500 and status not in (401, 403, 408, 429):
            # The message's fault (the address stays usable).
            return SendResult(PERMANENT, provider_response=answer, quarantines=False)
        # An API that did not answer or answered so is the provider's fault (messages.providers:
        # the next provider is tried); an error raised before the call (an invalid address...) is not.
        from messages.channels.http import written_then_lost

        return SendResult(
            TEMPORARY,
            provider_response=answer,
            provider_fault=isinstance(error, AnymailAPIError),
            outcome_unknown=status is None and written_then_lost(error),  # a request with no answer
        )
    return None


class _ShortHeadersAsWritten(Compat32):
    """Python's compat32 email policy (Django's), writing a short, printable, ASCII header value as
    it is, which is what compat32's folding writes for it, at a fraction of the cost: that folding
    is most of what writing an email's bytes costs. Any other value is folded by compat32."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if (
            isinstance(value, str)
            and value.isascii()
            and value.isprintable()
            and len(name) + 2 + len(value) <= (self.max_line_length or 0)
            and value == value.strip()
            and "  " not in value
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)  # type: ignore[misc]  # private in the stubs


SHORT_HEADERS_AS_WRITTEN = _ShortHeadersAsWritten()


class PreparedEmail(EmailMultiAlternatives):
    """Django's email, cheaper to write out: its multipart boundary drawn at random up front (else
    Python's generator draws one and compiles a regular expression for each email to check that
    the body does not contain it; 128 random bits cannot be guessed by whoever writes the event's
    data), and its short headers written as they are (`_ShortHeadersAsWritten`)."""

    def message(self, **kwargs: Any) -> Any:
        message = super().message(**kwargs)
        message.policy = SHORT_HEADERS_AS_WRITTEN
        if message.is_multipart():
            message.set_boundary(f"==============={secrets.token_hex(16)}==")
        return message


def django_send_seconds(path: str, options: dict[str, Any]) -> float:
    """The longest one send through a Django email backend can take: nothing to wait for in the
    process; SMTP about four exchanges (MAIL, RCPT, DATA, the message) of its timeout each, and a
    margin; an anymail API one request of its timeout (requests_timeout, else REQUESTS_TIMEOUT, 30 s
    by default); Amazon SES each of boto3's attempts (its config's read timeout, 60 s and 5 attempts
    by default), each request counted as one timeout (connecting is quick or fails at once)."""
    if path in IN_PROCESS_BACKENDS:
        return 1.0
    anymail = dict(getattr(settings, "ANYMAIL", None) or {})
    if path.startswith("anymail.backends.amazon_ses"):
        client = options.get("client_params") or anymail.get("AMAZON_SES_CLIENT_PARAMS") or {}
        config = client.get("config") or {}

        def setting(name: str) -> Any:  # a botocore Config or its dict
            return config.get(name) if isinstance(config, dict) else getattr(config, name, None)

        read = setting("read_timeout")
        retries = setting("retries") or {}
        attempts = retries.get("total_max_attempts") or (retries.get("max_attempts", 4) + 1)
        return float(attempts) * float(read or 60) + float(attempts)  # and the retries' sleeps
    if path.startswith("anymail."):
        timeout = (
            options.get("requests_timeout") or options.get("timeout") or anymail.get("REQUESTS_TIMEOUT") or 30
        )
        return requests_seconds(timeout) + 1.0
    timeout = options.get("timeout") or settings.EMAIL_TIMEOUT or 10
    return 4 * float(timeout) + 5


def requests_seconds(timeout: Any) -> float:
    """The longest a `requests` call to an email API with this timeout waits: a single number is
    counted once (the API's own host answers a connection at once or refuses it; reading is what
    takes time); a (connect, read) pair, or its "3.05,27" form from the environment, their sum."""
    if isinstance(timeout, str):
        try:
            timeout = [float(part) for part in timeout.split(",") if part.strip()]
        except ValueError:
            timeout = 30.0
    if isinstance(timeout, list | tuple):
        return float(sum(float(part) for part in timeout)) if timeout else 60.0
    return float(timeout)


def _note_data(connection: Any, local: threading.local) -> None:
    """Note when an SMTP connection starts a message's DATA: a failure after it leaves the outcome
    unknown (the server may have taken the message and its answer was lost)."""
    smtp = getattr(connection, "connection", None)
    if not isinstance(smtp, smtplib.SMTP):
        return
    data = smtp.data

    def noted(*args: Any, **kwargs: Any) -> Any:
        local.data_started = True
        return data(*args, **kwargs)

    smtp.data = noted  # type: ignore[method-assign]


def is_provider_fault(error: Exception) -> bool:
    """Whether a send's exception is the server's fault rather than the recipient's or the
    message's: a refused or dropped connection, a timeout, a refused login, a 5xx or 4xx answer
    outside the recipient and the data (messages.providers counts these toward a cool-down)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused | smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return False
    return isinstance(error, smtplib.SMTPException | OSError | socket.timeout)


class DjangoMailBackend:
    """Keeps one open connection per thread and reopens it once if the server dropped it.

    `backend` and `options`: a provider of EMAIL_PROVIDERS (a Django email backend's dotted path
    and its keyword arguments, e.g. host, port, username, password, use_tls); by default the
    EMAIL_* settings."""

    def __init__(self, backend: str = "", options: dict[str, Any] | None = None) -> None:
        self._local = threading.local()
        self.backend_path = backend or None
        self.options = dict(options or {})

    @property
    def waits_on_network(self) -> bool:
        """SMTP (or any backend that leaves the process) waits on a server: the worker's sender
        threads overlap those waits, each thread with its own connection."""
        return (self.backend_path or settings.EMAIL_BACKEND) not in IN_PROCESS_BACKENDS

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = get_connection(self.backend_path, fail_silently=False, **self.options)
            connection.open()
            _note_data(connection, self._local)
            self._local.connection = connection
        return connection

    @property
    def max_send_seconds(self) -> float:
        return django_send_seconds(self.backend_path or settings.EMAIL_BACKEND, self.options)

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
        message = PreparedEmail(
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
        cut = threading.Event()
        for attempt in (1, 2):
            reused = getattr(self._local, "connection", None) is not None
            self._local.data_started = False
            watchdog: threading.Timer | None = None
            try:
                connection = self._connection()
                watchdog = _watch(connection, self.max_send_seconds, cut)
                connection.send_messages([message])
                return SendResult(
                    SENT,
                    provider_message_id=provider_message_id(message),
                    provider_response=accepted(message),
                )
            except smtplib.SMTPServerDisconnected as error:
                self.close()
                unknown = bool(getattr(self._local, "data_started", False))
                if reused and attempt == 1 and not unknown and not cut.is_set():
                    continue  # the server closed an idle connection: one fresh try
                outcome, answer = classify_smtp_error(error)
                return SendResult(
                    outcome, provider_response=answer, provider_fault=True, outcome_unknown=unknown
                )
            except Exception as error:
                self.close()
                refused = classify_provider_error(error)
                if refused is not None:
                    return refused
                outcome, answer = classify_smtp_error(error)
                # No answer after the message's DATA (a timeout, a dropped connection): maybe sent.
                unknown = bool(getattr(self._local, "data_started", False)) and not isinstance(
                    error, smtplib.SMTPResponseException
                )
                return SendResult(
                    outcome,
                    provider_response=answer,
                    provider_fault=is_provider_fault(error),
                    outcome_unknown=unknown,
                )
            finally:
                if watchdog is not None:
                    watchdog.cancel()
        raise AssertionError("unreachable")


def _watch(connection: Any, seconds: float, cut: threading.Event) -> threading.Timer | None:
    """A socket's timeout bounds each wait, not a conversation: an SMTP server answering a byte at
    a time could hold a send past its bound (and its claim). The watchdog shuts the connection's
    socket down after `seconds`; smtplib then raises SMTPServerDisconnected (never a success)."""
    sock = getattr(getattr(connection, "connection", None), "sock", None)
    if sock is None:  # not SMTP (an email API, a file): its own timeouts bound it
        return None

    def shut() -> None:
        cut.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed meanwhile
            pass

    watchdog = threading.Timer(seconds, shut)
    watchdog.daemon = True
    watchdog.start()
    return watchdog


EMAIL_MAX_LENGTH = 254  # events.models.Event.email
_email_validator = EmailValidator()


def finish_email_parts(parts: dict[str, str]) -> dict[str, str]:
    """Email hygiene: CSS inlined in the HTML, and a text part derived from it when left empty."""
    html = parts.get("html", "")
    if not html.strip():
        return parts
    try:
        html = css_inline.inline(html)
    except ValueError:  # unparseable CSS: send the HTML as written
        pass
    text = parts.get("text", "")
    if not text.strip():
        text = inscriptis.get_text(html).strip()
    return {**parts, "html": html, "text": text}


class EmailChannel(Channel):
    name = "email"
    label = "Email"
    parts = (Part("subject", label="Subject"), Part("html", label="HTML"), Part("text", label="Text"))
    required = (("subject",), ("html", "text"))
    recipient_keys = (
        RecipientKey(
            "email",
            column="email",
            max_length=EMAIL_MAX_LENGTH,
            openapi={"type": "string", "maxLength": EMAIL_MAX_LENGTH, "format": "email"},
        ),
    )
    proof_part = "subject"
    preview_template = "messages/channels/email_preview.html"
    sample_address = "test@example.com"
    uses_default_sender = True
    sender_name_label = "From name"
    profile_has_address = True
    tracked_part = "html"
    tracks_opens = True
    tracking_by_default = True

    def default_content(self, *, label: str, fields: list[str], collections: list[dict]) -> dict[str, str]:
        lines_text = [f"{name}: {{{{ ctx.{name} }}}}" for name in fields]
        lines_html = [f"<li>{name}: {{{{ ctx.{name} }}}}</li>" for name in fields]
        for collection in collections:
            item = " ".join(f"{{{{ item.{f['name']} }}}}" for f in collection["fields"])
            lines_text.append(f"{{% for item in ctx.{collection['name']} %}}- {item}\n{{% endfor %}}")
            lines_html.append(
                f"<li>{collection['name']}<ul>{{% for item in ctx.{collection['name']} %}}<li>{item}</li>"
                f"{{% endfor %}}</ul></li>"
            )
        text = "\n".join(lines_text)
        return {
            "subject": label,
            "html": f"<p>{label}</p>\n<ul>\n" + "\n".join(lines_html) + "\n</ul>",
            "text": f"{label}\n\n{text}",
        }

    def finish(self, parts: dict[str, str], *, unsubscribe_url: str = "") -> tuple[dict[str, str], dict]:
        """CSS inlined, a text part derived from the HTML; one-click unsubscribe for profile-based email."""
        if not unsubscribe_url:
            return finish_email_parts(parts), {}
        headers = {
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        return finish_email_parts(parts), headers

    def recipient_from_body(self, body: Any, *, required: bool) -> dict[str, str]:
        email = body.get("email")
        if email is None and not required:
            return {}
        if not isinstance(email, str) or not email.strip():
            raise RecipientError("email", "is required for an email event")
        problem = bounds.text_problem(email.strip(), max_length=EMAIL_MAX_LENGTH)
        if problem:
            raise RecipientError("email", problem)
        try:
            _email_validator(email.strip())
        except ValidationError:
            raise RecipientError("email", f"'{email}' is not an email address") from None
        return {"email": email.strip()}

    def profile_address(self, profile: Profile) -> str:
        return profile.email

    def proof_address(self, typed: str) -> str:
        try:
            return addresses.normalise_email(typed)
        except ValidationError:
            raise senders.ProofRefused(f"'{typed}' is not an email address") from None

    def proof_allowed(self, *, organization: Organization, address: str) -> bool:
        return (
            senders.allow_listed(organization=organization, kinds=["email"], value=address)
            or senders.allow_listed(
                organization=organization, kinds=["domain"], value=addresses.domain_of(address)
            )
            or senders.is_test_profile_address(organization=organization, email__iexact=address)
        )

    def proof_key(self, address: str) -> str:
        return address.lower()

    def single_backend(self) -> ChannelBackend:
        return DjangoMailBackend()

    def provider_backend(self, path: str, options: dict[str, Any]) -> ChannelBackend:
        """A Django email backend's dotted path (SMTP by default) and its keyword arguments: the
        path imported and the options checked now (Django's backends take any keyword, so only a
        backend of narrower arguments refuses one here), the connection opened at the first send."""
        path = path or "django.core.mail.backends.smtp.EmailBackend"
        checked_options(import_string(path), path, options)
        return DjangoMailBackend(path, options)


EMAIL = EmailChannel()


def _may_reach_private() -> bool:
    return bool(getattr(settings, "PROVIDER_ALLOW_PRIVATE_TARGETS", False))


class _PinnedSMTP(smtplib.SMTP):
    """SMTP to the host's address resolved and checked at connect time (no private address unless
    PROVIDER_ALLOW_PRIVATE_TARGETS); STARTTLS still checks the certificate against the host name."""

    def _get_socket(self, host: str, port: int, timeout: Any) -> socket.socket:
        return network.pinned_socket(host, port, allow_private=_may_reach_private(), timeout=timeout)


class _PinnedSMTP_SSL(smtplib.SMTP_SSL):  # noqa: N801 - smtplib's name
    """SMTPS, as _PinnedSMTP: the TLS connection made to the checked address, for the host name."""

    def _get_socket(self, host: str, port: int, timeout: Any) -> socket.socket:
        raw = network.pinned_socket(host, port, allow_private=_may_reach_private(), timeout=timeout)
        return self.context.wrap_socket(raw, server_hostname=self._host)  # type: ignore[attr-defined]


class OrganizationSmtpBackend(smtp_backend.EmailBackend):
    """Django's SMTP backend for an organization's SMTP provider: its host resolved and checked at
    each (re)connection, the connection made to the address checked (a DNS rebinding after the form
    was saved reaches nothing private)."""

    @property
    def connection_class(self):  # type: ignore[override]
        return _PinnedSMTP_SSL if self.use_ssl else _PinnedSMTP
