"""The kinds of provider an organization may set up in the admin (messages.models.OrganizationProvider):
a fixed list in code, each naming its channel, the backend it builds and the fields it takes. A
user picks a kind, never a dotted path: what the product imports and where it connects is decided
here, and every field has its type and bounds.

A field is an option (kept in clear in the row's JSON) or a secret (a password, a token, a service
account's key: kept encrypted, messages.org_providers). Hosts and URLs are refused when they resolve
to a private, loopback or link-local address, and URLs must be https, unless
PROVIDER_ALLOW_PRIVATE_TARGETS is on (development, tests). A well-known service's URL (Twilio's,
FCM's, Google's token endpoint, an email API's, Amazon SES's endpoint) must be the service's own
(`Field.official`) unless that setting is on: a tenant never points the product's credentials, nor
its requests, at a host of its choosing. A host an organization types (SMTP, SMPP, a JSON gateway)
is checked again at each connection, made to the very address checked (campaign.network).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.urls import reverse
from django.utils.module_loading import import_string

from campaign import addresses, network
from messages.channels import ChannelBackend, send_bound_problem

URL_MAX_LENGTH = 500
TEXT_MAX_LENGTH = 200
SECRET_MAX_LENGTH = 20_000  # a service account's JSON is about 2,400 characters
TIMEOUT_BOUNDS = (0.1, 120.0)


class FieldProblem(ValueError):
    """A field's value refused, with a reason a person can act on (never the value of a secret)."""


@dataclass(frozen=True)
class Field:
    name: str  # the backend's keyword argument (or the kind's own name for it)
    label: str
    type: str = "text"  # text, host, domain, port, url, bool, seconds, sender, service_account
    required: bool = False
    secret: bool = False
    default: Any = None
    help: str = ""
    high: float | None = None  # a number's upper bound, when tighter than its type's
    # A URL's official forms (full-match patterns): another is refused unless PROVIDER_ALLOW_PRIVATE_TARGETS.
    official: tuple[str, ...] = ()

    @property
    def empty(self) -> Any:
        """What the backend is given when the field is empty: never None, which would make a
        backend read the installation's setting (its credentials, sent to this provider's host)."""
        if self.default is not None:
            return self.default
        return False if self.type == "bool" else ""

    def check(self, value: Any) -> Any:
        """The value as kept (an option) or used (a secret); FieldProblem otherwise."""
        if value in (None, ""):
            if self.required:
                raise FieldProblem("This field is required.")
            return self.empty
        check = _CHECKS.get(self.type, _text)
        checked = check(value, secret=self.secret)
        if self.high is not None and checked > self.high:
            raise FieldProblem(f"At most {self.high:g}.")
        if self.official:
            official_problem(checked, self.official)
        return checked


def official_problem(url: str, patterns: tuple[str, ...]) -> None:
    """FieldProblem unless `url` is one of the service's own (or PROVIDER_ALLOW_PRIVATE_TARGETS is on)."""
    if allow_private() or any(re.fullmatch(pattern, url) for pattern in patterns):
        return
    raise FieldProblem("Only the service's own URL is accepted (see below), or leave it empty.")


def allow_private() -> bool:
    return bool(getattr(settings, "PROVIDER_ALLOW_PRIVATE_TARGETS", False))


def _text(value: Any, *, secret: bool = False) -> str:
    text = str(value).strip()
    limit = SECRET_MAX_LENGTH if secret else TEXT_MAX_LENGTH
    if len(text) > limit:
        raise FieldProblem(f"At most {limit} characters.")
    if any(ord(c) < 32 for c in text):
        raise FieldProblem("No control characters (line breaks, tabs).")
    return text


def _domain(value: Any, *, secret: bool = False) -> str:
    """A domain name (normalised, never resolved: a sender domain may have only MX records)."""
    try:
        return addresses.normalise_domain(str(value))
    except ValidationError as error:
        raise FieldProblem(" ".join(error.messages)) from None


def _port(value: Any, *, secret: bool = False) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise FieldProblem("A port is a number from 1 to 65535.") from None
    if not 1 <= port <= 65535:
        raise FieldProblem("A port is a number from 1 to 65535.")
    return port


def _host(value: Any, *, secret: bool = False) -> str:
    host = str(value).strip()
    problem = network.host_name_problem(host)
    if problem:
        raise FieldProblem(problem)
    return host


def _url(value: Any, *, secret: bool = False) -> str:
    url = str(value).strip()
    if len(url) > URL_MAX_LENGTH:
        raise FieldProblem(f"At most {URL_MAX_LENGTH} characters.")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as error:
        raise FieldProblem(f"Not a URL: {error}.") from None
    schemes = ("https", "http") if allow_private() else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise FieldProblem("The URL must start with https:// and name a host.")
    if parts.username or parts.password:
        raise FieldProblem("The URL must not hold a user name or password (use the kind's secret fields).")
    return url


def _bool(value: Any, *, secret: bool = False) -> bool:
    if isinstance(value, bool):
        return value
    raise FieldProblem("Yes or no.")


def _seconds(value: Any, *, secret: bool = False) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise FieldProblem("A number of seconds.") from None
    low, high = TIMEOUT_BOUNDS
    if not low <= seconds <= high:
        raise FieldProblem(f"From {low} to {high:g} seconds.")
    return seconds


def _sender(value: Any, *, secret: bool = False) -> str:
    try:
        return addresses.sms_sender(str(value))
    except ValueError as error:
        raise FieldProblem(str(error)) from None


SERVICE_ACCOUNT_KEYS = ("client_email", "private_key", "token_uri")
GOOGLE_TOKEN_URIS = (r"https://oauth2\.googleapis\.com/token",)


def _service_account(value: Any, *, secret: bool = False) -> str:
    """A Firebase service account's JSON key: parsed, of type service_account, with its keys."""
    text = str(value).strip()
    if len(text) > SECRET_MAX_LENGTH:
        raise FieldProblem(f"At most {SECRET_MAX_LENGTH} characters.")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        # The position only: the message of a JSON error quotes nothing of the document.
        raise FieldProblem(f"Not JSON (line {error.lineno}, column {error.colno}).") from None
    except RecursionError:  # "[" * 10000: nested deeper than the parser goes
        raise FieldProblem("Not a service account's JSON key (nested too deeply).") from None
    if not isinstance(parsed, dict) or parsed.get("type") != "service_account":
        raise FieldProblem('Not a service account\'s JSON key (its "type" must be "service_account").')
    missing = [key for key in SERVICE_ACCOUNT_KEYS if not isinstance(parsed.get(key), str) or not parsed[key]]
    if missing:
        raise FieldProblem(f"The service account's JSON key has no {', '.join(missing)}.")
    try:
        official_problem(_url(parsed["token_uri"]), GOOGLE_TOKEN_URIS)
    except FieldProblem as problem:
        raise FieldProblem(f"Its token_uri: {problem}") from None
    return text


_CHECKS: dict[str, Callable[..., Any]] = {
    "text": _text,
    "host": _host,
    "domain": _domain,
    "port": _port,
    "url": _url,
    "bool": _bool,
    "seconds": _seconds,
    "sender": _sender,
    "service_account": _service_account,
}


@dataclass(frozen=True)
class BuildContext:
    """What a kind's backend needs besides its fields: the provider's row id (Twilio's callback
    URL names it)."""

    provider_id: int
    organization_id: int | None = None  # None: read from the provider's row when needed
    provider_name: str = ""


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    channel: str
    fields: tuple[Field, ...]
    build: Callable[[Kind, dict[str, Any], dict[str, str], BuildContext], ChannelBackend]
    backend: str = ""  # the Django email backend (email kinds), the channel backend class (or payload)
    requires: str = ""  # a module the kind needs installed

    @property
    def options(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if not f.secret)

    @property
    def secrets(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.secret)

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


# --- building a backend ------------------------------------------------------------------------


def every_field(kind: Kind, options: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """Every field of the kind with a value (its empty value when unset): a backend given None
    would read the installation's setting instead."""
    given = {**options, **secrets}
    values = {
        item.name: item.empty if given.get(item.name) in (None, "") else given[item.name]
        for item in kind.fields
    }
    refuse_unofficial(kind, values)
    return values


def refuse_unofficial(kind: Kind, values: Mapping[str, Any]) -> None:
    """ImproperlyConfigured when a well-known service's URL is not its own (a row saved before the
    rule, or PROVIDER_ALLOW_PRIVATE_TARGETS turned off since): its sends wait, see the admin."""
    for item in kind.fields:
        value = values.get(item.name)
        if not value or not isinstance(value, str):
            continue
        try:
            if item.official:
                official_problem(value, item.official)
            elif item.type == "service_account":
                _service_account(value)
        except FieldProblem as problem:
            raise ImproperlyConfigured(f"{item.label}: {problem}") from None


# What anymail reads from the installation's settings (ANYMAIL_*, <ESP>_*) when a keyword is not
# given: given explicitly, so no setting of the installation (its sender domain, its API URL, its
# debug logging of requests) applies to an organization's provider.
_ANYMAIL_FIXED: dict[str, Any] = {
    "ignore_unsupported_features": False,
    "ignore_recipient_status": False,
    "debug_api_requests": False,
    "send_defaults": {},
    "requests_timeout": 20,  # the bound of one send (messages.channels.email)
}
_ANYMAIL_OF_KIND: dict[str, dict[str, Any]] = {
    "postmark": {"message_stream": None, "use_bulk_api": False, "generate_message_id": False},
    "mailgun": {"sender_domain": None},
    "sendgrid": {"generate_message_id": True, "merge_field_format": None},
    "brevo": {},
    "amazon_ses": {"configuration_set_name": None, "message_tag_name": None},
}


def anymail_options(kind: Kind, options: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """Every keyword an anymail backend of this kind reads, with the organization's value or an
    explicit default (its API URL: the service's own)."""
    kwargs: dict[str, Any] = {**_ANYMAIL_FIXED, **_ANYMAIL_OF_KIND.get(kind.key, {})}
    for name, value in every_field(kind, options, secrets).items():
        if value not in ("", None) and name not in WEBHOOK_FIELDS:  # the webhooks' (provider_events)
            kwargs[name] = value
    return kwargs


def _email(kind: Kind, options: dict[str, Any], secrets: dict[str, str], context: BuildContext):
    """An anymail backend: the organization's credentials, every other keyword explicit."""
    from messages.channels.email import DjangoMailBackend

    return DjangoMailBackend(kind.backend, anymail_options(kind, options, secrets))


def smtp_problem(options: Mapping[str, Any], secrets: Mapping[str, str]) -> str:
    """Why these SMTP settings may not be used ("" when they may): a password sent in clear."""
    if allow_private():
        return ""
    if (options.get("username") or secrets.get("password")) and not (
        options.get("use_tls") or options.get("use_ssl")
    ):
        return "A user name or password is sent only over TLS: tick STARTTLS or TLS from the start."
    return ""


def _smtp(kind: Kind, options: dict[str, Any], secrets: dict[str, str], context: BuildContext):
    from messages.channels.email import DjangoMailBackend

    problem = smtp_problem(options, secrets)
    if problem:
        raise ImproperlyConfigured(problem)
    kwargs = every_field(kind, options, secrets)
    # Never the installation's client certificate (EMAIL_SSL_CERTFILE...) toward this host.
    kwargs.update(ssl_keyfile="", ssl_certfile="")
    return DjangoMailBackend(kind.backend, kwargs)


SES_ENDPOINTS = (r"https://email\.[a-z]{2}(-[a-z]+)+-[0-9]\.amazonaws\.com/?",)
SES_MAX_ATTEMPTS = 2  # botocore's total attempts, the first included (the pipeline retries the message later)


def ses_config(timeout: float) -> dict[str, Any]:
    """boto3's client config of an organization's Amazon SES: bounded requests."""
    return {
        "connect_timeout": timeout,
        "read_timeout": timeout,
        "retries": {"total_max_attempts": SES_MAX_ATTEMPTS, "mode": "standard"},
    }


def ses_params(options: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """anymail's session and client parameters of an organization's Amazon SES: its own keys,
    always (ImproperlyConfigured without them: boto3 would otherwise use the machine's AWS
    credentials, toward an endpoint the organization may have chosen), and bounded requests."""
    key_id = str(options.get("aws_access_key_id") or "")
    secret = str(secrets.get("aws_secret_access_key") or "")
    if not key_id or not secret:
        raise ImproperlyConfigured("Amazon SES needs the organization's access key id and secret access key.")
    endpoint = str(options.get("endpoint_url") or "")
    if endpoint:
        try:
            official_problem(endpoint, SES_ENDPOINTS)
        except FieldProblem as problem:
            raise ImproperlyConfigured(f"Amazon SES endpoint: {problem}") from None
    client: dict[str, Any] = {"config": ses_config(float(options.get("timeout") or 10.0))}
    if endpoint:
        client["endpoint_url"] = endpoint
    session = {
        "region_name": options.get("region_name") or None,
        "aws_access_key_id": key_id,
        "aws_secret_access_key": secret,
    }
    return {"session_params": session, "client_params": client}


def _amazon_ses(kind: Kind, options: dict[str, Any], secrets: dict[str, str], context: BuildContext):
    from messages.channels.email import DjangoMailBackend

    params = ses_params(options, secrets)  # before anything else: no keys, no backend
    return DjangoMailBackend(kind.backend, {**_ANYMAIL_FIXED, **_ANYMAIL_OF_KIND["amazon_ses"], **params})


def _keywords(kind: Kind, options: dict[str, Any], secrets: dict[str, str], context: BuildContext):
    """A channel backend taking its fields as keyword arguments (messages.channels.*)."""
    return import_string(kind.backend)(**every_field(kind, options, secrets))


def _json_gateway(kind: Kind, options: dict[str, Any], secrets: dict[str, str], context: BuildContext):
    """A JSON gateway of the organization: its URL's host checked at each request (OrganizationGateway)."""
    from messages.channels.http import OrganizationGateway

    given = every_field(kind, options, secrets)
    return OrganizationGateway(url=given["url"], token=given["token"], payload=import_string(kind.backend))


def twilio_callback_url(provider_id: int, route: str = "status") -> str:
    """Where Twilio reports an organization's SMS (its own route, checked with its own token):
    the Twilio webhook base (twilio_sms.twilio_webhook_base) + the route; "" without a base."""
    from messages.channels.twilio_sms import twilio_webhook_base

    base = twilio_webhook_base()
    return base + reverse(f"twilio-provider-{route}", args=[provider_id]) if base else ""


def _twilio(kind: Kind, options: dict[str, Any], secrets: dict[str, str], context: BuildContext):
    return import_string(kind.backend)(
        **every_field(kind, options, secrets), status_callback_url=twilio_callback_url(context.provider_id)
    )


def _smpp(kind: Kind, options: dict[str, Any], secrets: dict[str, str], context: BuildContext):
    """An SMPP bind of the organization's own: what arrives on it (receipts, STOP) is its."""
    from messages.channels.smpp import BindOwner
    from messages.models import OrganizationProvider
    from messages.sms_replies import provider_key

    organization_id, name = context.organization_id, context.provider_name
    if organization_id is None:
        row = (
            OrganizationProvider.objects.filter(pk=context.provider_id)
            .only("organization_id", "name")
            .first()
        )
        if row is None:  # not saved yet (a form's check): a bind of its own all the same
            owner = BindOwner(None, f"smpp:provider{context.provider_id}")
            return import_string(kind.backend)(**every_field(kind, options, secrets), owner=owner)
        organization_id, name = row.organization_id, row.name
    owner = BindOwner(organization_id, provider_key("smpp", organization_id, context.provider_id), name)
    return import_string(kind.backend)(**every_field(kind, options, secrets), owner=owner)


def _fcm(kind: Kind, options: dict[str, Any], secrets: dict[str, str], context: BuildContext):
    # Never the installation's service account file (FCM_SERVICE_ACCOUNT_FILE).
    return import_string(kind.backend)(**every_field(kind, options, secrets), service_account_file="")


def _timeout(default: float = 10.0, high: float = TIMEOUT_BOUNDS[1]) -> Field:
    return Field(
        "timeout",
        "Timeout (seconds)",
        "seconds",
        default=default,
        help=f"0.1 to {high:g} seconds, short enough for one send to fit in an event's claim.",
        high=high,
    )


def _api_url(*official: str) -> Field:
    """An email API's URL: the service's own (the first is the default)."""
    shown = " or ".join(url.replace("\\", "").replace("/?", "/") for url in official)
    return Field(
        "api_url",
        "API URL",
        "url",
        default=official[0].replace("\\", "").replace("/?", "/"),
        help=f"The service's own: {shown}.",
        official=official,
    )


# An ESP's tracking webhooks for an organization's own account (messages.provider_events).
WEBHOOK_FIELDS = frozenset({"webhook_secret", "webhook_signing_key"})


def _webhook_secret() -> Field:
    return Field(
        "webhook_secret",
        "Webhook secret (user:password)",
        secret=True,
        help="The basic auth of its tracking webhook URL: "
        "https://user:password@<this host>/anymail/provider/<id>/<kind>/tracking/ (see README).",
    )


KINDS: dict[str, Kind] = {
    kind.key: kind
    for kind in (
        Kind(
            "smtp",
            "SMTP",
            "email",
            (
                Field("host", "Host", "host", required=True),
                Field("port", "Port", "port", default=587),
                Field("username", "User name"),
                Field("password", "Password", secret=True),
                Field("use_tls", "STARTTLS", "bool", default=True),
                Field("use_ssl", "TLS from the start (SMTPS)", "bool", default=False),
                _timeout(),
            ),
            _smtp,
            backend="messages.channels.email.OrganizationSmtpBackend",
        ),
        Kind(
            "postmark",
            "Postmark",
            "email",
            (
                Field("server_token", "Server token", required=True, secret=True),
                _api_url(r"https://api\.postmarkapp\.com/?"),
                _webhook_secret(),
            ),
            _email,
            backend="anymail.backends.postmark.EmailBackend",
        ),
        Kind(
            "mailgun",
            "Mailgun",
            "email",
            (
                Field("api_key", "API key", required=True, secret=True),
                Field("sender_domain", "Sender domain", "domain", help="Empty: the From address's domain."),
                _api_url(r"https://api\.mailgun\.net/v3/?", r"https://api\.eu\.mailgun\.net/v3/?"),
                _webhook_secret(),
                Field(
                    "webhook_signing_key",
                    "Webhook signing key",
                    secret=True,
                    help="Mailgun's HTTP webhook signing key (its tracking webhook needs it).",
                ),
            ),
            _email,
            backend="anymail.backends.mailgun.EmailBackend",
        ),
        Kind(
            "sendgrid",
            "SendGrid",
            "email",
            (
                Field("api_key", "API key", required=True, secret=True),
                _api_url(r"https://api\.sendgrid\.com/v3/?"),
                _webhook_secret(),
            ),
            _email,
            backend="anymail.backends.sendgrid.EmailBackend",
        ),
        Kind(
            "amazon_ses",
            "Amazon SES",
            "email",
            (
                Field(
                    "region_name", "Region", help="e.g. eu-west-1; empty: the machine's AWS configuration."
                ),
                Field("aws_access_key_id", "Access key id", required=True),
                Field("aws_secret_access_key", "Secret access key", required=True, secret=True),
                Field(
                    "endpoint_url",
                    "Endpoint URL",
                    "url",
                    help="Empty: the region's. Else https://email.<region>.amazonaws.com only.",
                    official=SES_ENDPOINTS,
                ),
                _timeout(high=60.0),
                _webhook_secret(),
            ),
            _amazon_ses,
            backend="anymail.backends.amazon_ses.EmailBackend",
            requires="boto3",
        ),
        Kind(
            "brevo",
            "Brevo",
            "email",
            (
                Field("api_key", "API key", required=True, secret=True),
                _api_url(r"https://api\.brevo\.com/v3/?"),
                _webhook_secret(),
            ),
            _email,
            backend="anymail.backends.brevo.EmailBackend",
        ),
        Kind(
            "smpp",
            "SMPP",
            "sms",
            (
                Field("host", "Host", "host", required=True),
                Field("port", "Port", "port", default=2775),
                Field("system_id", "System id", required=True),
                Field("password", "Password", secret=True),
                Field("system_type", "System type"),
                Field(
                    "source_addr",
                    "Default sender",
                    "sender",
                    help="When neither message nor organization names one.",
                ),
                _timeout(),
            ),
            _smpp,
            backend="messages.channels.smpp.SmppSmsBackend",
        ),
        Kind(
            "twilio",
            "Twilio",
            "sms",
            (
                Field("account_sid", "Account SID", required=True),
                Field("auth_token", "Auth token", required=True, secret=True),
                Field(
                    "from_",
                    "Default sender",
                    "sender",
                    help="When neither message nor organization names one.",
                ),
                Field("messaging_service_sid", "Messaging service SID"),
                Field(
                    "base_url",
                    "API base URL",
                    "url",
                    default="https://api.twilio.com",
                    help="Twilio's own: https://api.twilio.com.",
                    official=(r"https://api\.twilio\.com/?",),
                ),
                _timeout(high=60.0),
            ),
            _twilio,
            backend="messages.channels.twilio_sms.TwilioSmsBackend",
        ),
        Kind(
            "http_sms",
            "JSON gateway (SMS)",
            "sms",
            (Field("url", "Gateway URL", "url", required=True), Field("token", "Bearer token", secret=True)),
            _json_gateway,
            backend="messages.channels.sms.sms_payload",
        ),
        Kind(
            "fcm",
            "Firebase Cloud Messaging v1",
            "push",
            (
                Field(
                    "service_account_json",
                    "Service account JSON key",
                    "service_account",
                    required=True,
                    secret=True,
                ),
                Field("project_id", "Project id", help="Empty: the service account's project_id."),
                Field(
                    "base_url",
                    "FCM base URL",
                    "url",
                    default="https://fcm.googleapis.com",
                    help="Google's own: https://fcm.googleapis.com.",
                    official=(r"https://fcm\.googleapis\.com/?",),
                ),
                _timeout(high=60.0),
            ),
            _fcm,
            backend="messages.channels.push.FcmPushBackend",
        ),
        Kind(
            "http_push",
            "JSON gateway (push)",
            "push",
            (Field("url", "Gateway URL", "url", required=True), Field("token", "Bearer token", secret=True)),
            _json_gateway,
            backend="messages.channels.push.fcm_payload",
        ),
    )
}


def kind_choices() -> list[tuple[str, str]]:
    """Model field choices (a callable: a new kind changes no migration)."""
    return [(kind.key, f"{kind.label} ({kind.channel})") for kind in KINDS.values()]


def kind_of(key: str) -> Kind:
    try:
        return KINDS[key]
    except KeyError:
        raise KeyError(f"unknown provider kind '{key[:40]}'") from None


@dataclass
class Checked:
    options: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # field name: reason


def check_options(kind: Kind, values: Mapping[str, Any]) -> Checked:
    """A kind's options checked one by one, then the places they name (hosts resolved, private
    addresses refused unless PROVIDER_ALLOW_PRIVATE_TARGETS)."""
    checked = Checked()
    for item in kind.options:
        try:
            checked.options[item.name] = item.check(values.get(item.name))
        except FieldProblem as refused:
            checked.problems[item.name] = str(refused)
    if kind.requires:
        try:
            __import__(kind.requires)
        except ImportError:
            checked.problems.setdefault(
                "", f"{kind.label} needs the Python package {kind.requires} installed."
            )
    for item in kind.options:
        value = checked.options.get(item.name)
        if item.name in checked.problems or not value:
            continue
        if item.type == "host":
            port = checked.options.get("port") or 443
            problem = network.reachable_host_problem(value, int(port), allow_private=allow_private())
        elif item.type == "url":
            parts = urllib.parse.urlsplit(value)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            problem = network.reachable_host_problem(
                parts.hostname or "", port, allow_private=allow_private()
            )
        else:
            continue
        if problem:
            checked.problems[item.name] = problem
    if checked.options.get("use_tls") and checked.options.get("use_ssl"):
        checked.problems["use_ssl"] = "Choose STARTTLS or TLS from the start, not both."
    if checked.options.get("timeout") and "timeout" not in checked.problems and kind.backend:
        # One send within what an event's claim leaves (messages.channels.send_budget).
        ses = {"client_params": {"config": ses_config(1.0)}} if kind.key == "amazon_ses" else None
        problem = send_bound_problem(kind.backend, float(checked.options["timeout"]), ses)
        if problem:
            checked.problems["timeout"] = problem
    return checked


def build_problem(kind: Kind, options: dict[str, Any], secrets: dict[str, str], *, provider_id: int) -> str:
    """Why the kind's backend cannot be built from these values ("" when it can): building opens
    no connection (a service account's key parsed, a project found, Amazon SES's keys present)."""
    try:
        backend = kind.build(kind, dict(options), dict(secrets), BuildContext(provider_id=provider_id))
    except ImproperlyConfigured as error:
        return str(error)[:300]
    except ImportError:
        return f"{kind.label} needs a Python package that is not installed."
    close = getattr(backend, "close", None)
    if callable(close):
        close()
    return ""


def check_secret(item: Field, value: str) -> str:
    """A secret as typed, checked (FieldProblem says why without quoting it)."""
    return str(item.check(value))
