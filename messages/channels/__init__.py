"""Channels: one module per channel (email.py, sms.py, push.py), each declaring everything about
its channel in one `Channel` object, and the registry the rest of the house looks them up in.

A channel object says which content parts a message has (and which are required), which recipient
keys an event carries in the API (body and answer), how the address is found for an event or a
profile, the first draft of a new message, how proofs are addressed, how a preview is shown, and
which backend sends. Nothing else in `campaign`, `events` or `messages` branches on a channel's name.

The registry reads the TRANSACTIONAL_CHANNELS setting (dotted paths of channel objects) at lookup
time, so a settings override (a test's fake channel) takes effect at once. Adding a channel is one
module plus its path in that setting.

A backend never raises for a delivery problem: it classifies it as a temporary failure (try again
later: SMTP 4xx, connection refused, timeout) or a permanent one (SMTP 5xx for the recipient).
A backend whose sends wait on a server says so (`waits_on_network`): the worker then runs several
of its sends at once, on threads (events.sending), so it must be safe to call from several threads.
A backend also says the longest one send can take, from its own timeouts (`max_send_seconds`): a
send starts only if that much of its claim's lease is left (messages.providers), so a send never
outlives the lease and is never made twice by the worker that takes the event over.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from campaign import bounds, senders
from campaign.models import Organization, Profile


@dataclass(frozen=True)
class Recipient:
    address: str  # email address, E.164 phone number, or push registration token
    push_platform: str = ""
    application: str = ""
    name: str = ""


@dataclass(frozen=True)
class RenderedMessage:
    parts: dict[str, str]  # subject/html/text, text, or title/body
    from_name: str = ""
    from_address: str = ""
    reply_to: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)  # push payload data
    # The signed tracking id the rewritten links carry, and their original URLs (messages.tracking).
    tracking_id: str = ""
    tracked_links: tuple[str, ...] = ()
    expires_at: dt.datetime | None = None  # the event's expiration: a push's time to live


@dataclass(frozen=True)
class SendResult:
    outcome: str  # Delivery.Outcome value
    provider_message_id: str = ""
    provider_response: str = ""
    # A temporary failure: the server's Retry-After (seconds), the next attempt no sooner than that.
    retry_after: float | None = None
    # A permanent failure: whether it is the address's (quarantined: a dead push token, an unknown
    # mailbox) or the message's (an invalid payload: the address stays usable).
    quarantines: bool = True
    # A failure that is the provider's, not the recipient's or the message's (a refused connection,
    # a timeout, an authentication error, a 5xx about the server): counts toward its cool-down.
    provider_fault: bool = False
    # With several providers (messages.providers): the one that answered, and every attempt
    # ({"provider", "outcome", "response"}) in order.
    provider: str = ""
    attempts: tuple[dict[str, Any], ...] = ()
    # Nothing was sent nor tried: the providers' rate limits had no slot before the claim ended
    # (messages.providers). The event waits for one, the attempt not counted.
    rate_limited: bool = False
    # Nothing was sent nor tried: less of the claim's lease was left than one send can take
    # (`max_send_seconds`). The event is tried again with a new lease, the attempt not counted.
    lease_too_short: bool = False
    # A failure after the request was written and before its answer came (a read timeout, no
    # submit_sm_resp, a connection lost after SMTP's DATA): the provider may have taken the message.
    # It is never sent at once through another provider (messages.providers), only retried later.
    outcome_unknown: bool = False

    @property
    def sent(self) -> bool:
        return self.outcome == "sent"


class ChannelBackend(Protocol):
    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult: ...


def waits_on_network(backend: ChannelBackend) -> bool:
    """Whether the backend's sends wait on a server (an attribute a backend may declare; default no)."""
    return bool(getattr(backend, "waits_on_network", False))


# The margin a claim keeps besides its send: the records written after it (and the clocks' drift).
RECORD_MARGIN_SECONDS = 5.0


def legacy_send_seconds() -> float:
    """The bound of a backend that declares none: an SMTP conversation of EMAIL_TIMEOUT exchanges."""
    return 4 * float(settings.EMAIL_TIMEOUT or 10) + 5


def max_send_seconds(backend: ChannelBackend) -> float:
    """The longest one send of this backend can take, from its own timeouts (its
    `max_send_seconds`; a backend that declares none is given the SMTP bound)."""
    declared = getattr(backend, "max_send_seconds", None)
    return float(declared) if declared is not None else legacy_send_seconds()


def send_budget() -> float:
    """The longest one send may take: the lease (EVENT_LEASE_SECONDS) less the render's bound
    (RENDER_TIMEOUT_SECONDS, between the lease's renewal and the send) and the records' margin.
    A provider whose timeouts allow more is refused in the organization's form and warned about by
    `manage.py check` (messages.checks)."""
    lease = float(settings.EVENT_LEASE_SECONDS)
    render = float(getattr(settings, "RENDER_TIMEOUT_SECONDS", 2.0) or 0)
    return max(lease - render - RECORD_MARGIN_SECONDS, 1.0)


def send_bound_problem(backend_path: str, timeout: float, options: dict[str, Any] | None = None) -> str:
    """Why a provider's timeout is too long for an event's claim ("" when it fits): one send could
    take longer than `send_budget` (an organization's provider form names the highest that fits).
    `options`: a Django email backend's other options (their timeouts set to this one)."""
    longest = longest_send(backend_path, timeout, options)
    budget = send_budget()
    if longest is None or longest <= budget:
        return ""
    one = longest_send(backend_path, 1.0, options) or 0.0
    two = longest_send(backend_path, 2.0, options) or 0.0
    per_second = max(two - one, 0.000001)  # every bound grows linearly with the timeout
    highest = int((budget - (one - per_second)) / per_second * 10) / 10
    allowed = f"at most {highest:g} seconds" if highest >= 0.1 else "raise EVENT_LEASE_SECONDS"
    return (
        f"One send could take up to {longest:.0f} s with this timeout, more than the {budget:.0f} s "
        f"a worker's claim on an event leaves for it: {allowed}."
    )


def longest_send(backend_path: str, timeout: float, options: dict[str, Any] | None = None) -> float | None:
    """The longest one send of a backend class (or Django email backend) given this timeout: its
    `send_seconds(timeout)`, else a Django email backend's bound (`options`: its other options, an
    Amazon SES client config whose timeouts become this one)."""
    from messages.channels.email import django_send_seconds

    try:
        target = import_string(backend_path)
    except Exception:  # noqa: BLE001 - an email backend whose package is missing: its bound is known
        target = None
    bound = getattr(target, "send_seconds", None)
    if callable(bound):
        return float(bound(timeout))
    given: dict[str, Any] = {**(options or {}), "timeout": timeout}
    config = (given.get("client_params") or {}).get("config")
    if isinstance(config, dict):
        config = {**config, "connect_timeout": timeout, "read_timeout": timeout}
        given["client_params"] = {**given["client_params"], "config": config}
    return django_send_seconds(backend_path, given)


# --- A backend's options (its keyword arguments: a provider's `options` in <CHANNEL>_PROVIDERS) ---

_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def backend_option(
    backend: str,
    name: str,
    value: Any,
    kind: Any,  # str, int, float, bool, or a union such as str | dict
    *,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """A backend's keyword argument checked (its type, its bounds): None stays None (the setting's
    value, read when used); a wrong one is ImproperlyConfigured naming the option, never its value
    (it may be a secret)."""
    if value is None:
        return None
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        wanted = _KIND_NAMES.get(kind, str(kind).replace(" | ", " or "))
        raise ImproperlyConfigured(
            f"{backend}: the option '{name}' must be {wanted}, not {type(value).__name__}"
        )
    if (low is not None and value < low) or (high is not None and value > high):
        raise ImproperlyConfigured(f"{backend}: the option '{name}' must be from {low:g} to {high:g}")
    return value


def setting_or(value: Any, setting: str) -> Any:
    """A backend's option as given, else (None) its setting's current value."""
    return getattr(settings, setting) if value is None else value


def unknown_options(target: Callable[..., Any], options: Mapping[str, Any]) -> list[str]:
    """The options a backend class (or function) does not take as keyword arguments."""
    parameters = inspect.signature(target).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return []
    names = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    return sorted(set(options) - names)


def taken_options(target: Callable[..., Any]) -> list[str]:
    """The keyword arguments a backend takes (named in the error of an unknown one)."""
    return [
        p.name
        for p in inspect.signature(target).parameters.values()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]


def checked_options(target: Callable[..., Any], path: str, options: Mapping[str, Any]) -> None:
    """ImproperlyConfigured when a provider's options name one its backend does not take."""
    unknown = unknown_options(target, options)
    if unknown:
        taken = taken_options(target)
        raise ImproperlyConfigured(
            f"{path} takes no option {', '.join(repr(u) for u in unknown)} "
            f"(its options: {', '.join(taken) if taken else 'none'})"
        )


class RecipientError(Exception):
    """A recipient key of a POSTed body that is missing or wrong; `field` is the API's key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ProofAddressError(Exception):
    """A typed proof recipient this channel cannot send to, or a test profile without an address."""


@dataclass(frozen=True)
class Part:
    """One content part of a message: its key in the content (and in the configuration file's
    `message`), the draft column of TransactionalMessage that holds it, and its label in the editor."""

    name: str
    column: str = ""  # default: the same as the name
    label: str = ""

    @property
    def draft_column(self) -> str:
        return self.column or self.name


@dataclass(frozen=True)
class RecipientKey:
    """A key of the API's body (and answer) that carries the recipient, and the Event column keeping it."""

    name: str
    column: str
    openapi: Mapping[str, Any]
    required: bool = True  # in the body of an event-targeted event
    max_length: int | None = None


class Channel:
    """Everything about one channel. Subclass it in messages/channels/<name>.py and make one instance.

    The defaults fit a simple channel: one recipient key whose text is the address, every part
    rendered as written, a proof going only to the organization's allow-list (kind = `proof_kind`).
    """

    name: str = ""
    label: str = ""
    parts: tuple[Part, ...] = ()
    # Each group: at least one of these parts must be non-empty for the message to be sent.
    required: tuple[tuple[str, ...], ...] = ()
    recipient_keys: tuple[RecipientKey, ...] = ()
    proof_part: str = ""  # the part a proof marks with "[Proof] "
    proof_kind: str = ""  # the ProofRecipient.Kind of its allow-list entries
    # An HTML fragment shown in the editor and on the preview page; the default lists the parts.
    preview_template: str = "messages/channels/parts_preview.html"
    backend_setting: str = ""  # the setting naming the backend class (a dotted path)
    sample_address: str = ""  # the recipient of the API's example body
    uses_default_sender: bool = False  # the organization's sender address when the message has none
    # The sender name a message of this channel shows, labelled so in the editor ("": none is sent).
    sender_name_label: str = ""
    profile_has_address: bool = False  # whether a profile carries an address of this channel
    proof_addresses_label: str = "Test addresses"  # the proof form's field of typed recipients
    # Opens and clicks (messages.tracking): the part whose links are tracked ("": none); whether
    # opens are (an image in an HTML part); whether links become short links (a text part); and
    # whether tracking is on unless the message switches it off (email) or off unless it opts in.
    tracked_part: str = ""
    tracks_opens: bool = False
    short_links: bool = False
    tracking_by_default: bool = False

    # --- content -------------------------------------------------------------------------------

    @property
    def content_keys(self) -> tuple[str, ...]:
        return tuple(part.name for part in self.parts)

    def part(self, name: str) -> Part | None:
        return next((p for p in self.parts if p.name == name), None)

    def missing_parts(self, content: Mapping[str, Any]) -> list[tuple[str, ...]]:
        """The required groups of which no part has text."""
        return [group for group in self.required if not any(str(content.get(p) or "").strip() for p in group)]

    def default_content(self, *, label: str, fields: list[str], collections: list[dict]) -> dict[str, str]:
        """The first draft of a new message: the event's fields, so a marketer starts from data."""
        line = " ".join(f"{{{{ ctx.{name} }}}}" for name in fields) or label
        return {part.name: line for part in self.parts}

    def finish(self, parts: dict[str, str], *, unsubscribe_url: str = "") -> tuple[dict[str, str], dict]:
        """The rendered parts as they leave (and the headers they need): nothing to add by default."""
        return parts, {}

    def tracking_switches(self, content: Mapping[str, Any]) -> tuple[bool, bool]:
        """(opens, clicks) of a content: its `tracking` key, else this channel's default."""
        if not self.tracked_part:
            return False, False
        tracking = content.get("tracking") or {}
        default = self.tracking_by_default
        opens = self.tracks_opens and tracking.get("opens", default) is True
        return opens, tracking.get("clicks", default) is True

    def tracking_content(self, *, opens: bool, clicks: bool) -> dict[str, bool] | None:
        """The content's `tracking` key for these switches; None when they are the channel's default
        (so the contents published before tracking existed stay equal to their drafts)."""
        if not self.tracked_part:
            return None
        opens = opens and self.tracks_opens
        default = self.tracking_by_default
        if (opens, clicks) == (default and self.tracks_opens, default):
            return None
        return {"opens": opens, "clicks": clicks} if self.tracks_opens else {"clicks": clicks}

    def tracking_fields(self) -> dict[str, bool]:
        """The switches of a new message (TransactionalMessage.track_opens, track_clicks)."""
        return dict(zip(("track_opens", "track_clicks"), self.tracking_switches({}), strict=True))

    def preview_context(self, rendered: RenderedMessage) -> dict[str, Any]:
        """What the preview template needs besides the rendered message: (label, text) of each part."""
        return {"preview_parts": [(p.label or p.name, rendered.parts.get(p.name, "")) for p in self.parts]}

    def preview_data(self, rendered: RenderedMessage) -> dict[str, Any]:
        """What the editor's live preview shows besides the parts, as JSON: nothing by default."""
        return {}

    def default_sender_name(self, organization: Organization) -> str:
        """The sender name of a message that names none: the organization's brand (a From name)."""
        return organization.sender_name or organization.name

    def sender_name(self, name: str) -> str:
        """A message's own sender name as it is sent, checked (ValueError says why): any text by
        default (an email's From name); "" stays "" (the organization's default)."""
        return name

    # --- recipients ----------------------------------------------------------------------------

    def recipient_from_body(self, body: Mapping[str, Any], *, required: bool) -> dict[str, str]:
        """The Event columns of a POSTed body's recipient keys, checked; RecipientError names a key.

        `required` is true for event targeting (the recipient is in the event); a profile-based
        event may still carry the keys, and they are checked the same way."""
        found: dict[str, str] = {}
        for key in self.recipient_keys:
            value = body.get(key.name)
            if value is None and not (required and key.required):
                continue
            if not isinstance(value, str) or (key.required and not value.strip()):
                raise RecipientError(key.name, f"is required for a {self.name} event")
            problem = bounds.text_problem(value.strip(), max_length=key.max_length)
            if problem:
                raise RecipientError(key.name, problem)
            found[key.column] = value.strip()
        return found

    def answer(self, event: Any) -> dict[str, str]:
        """The recipient keys of the API's answer, from the event's columns."""
        return {key.name: getattr(event, key.column) for key in self.recipient_keys}

    def sample_body(self) -> dict[str, str]:
        return {self.recipient_keys[0].name: self.sample_address} if self.recipient_keys else {}

    def event_recipient(self, event: Any) -> Recipient:
        """Where an event-based event goes: the address it carries."""
        return Recipient(address=getattr(event, self.recipient_keys[0].column))

    def profile_address(self, profile: Profile) -> str:
        """The profile's address on this channel ("" when a profile cannot have one)."""
        return ""

    def profile_recipient(self, event: Any, profile: Profile) -> Recipient:
        """Where a profile-based event goes: the matched profile's address, with its name."""
        name = " ".join(p for p in (profile.first_name, profile.last_name) if p)
        return Recipient(address=self.profile_address(profile), name=name)

    # --- proofs --------------------------------------------------------------------------------

    def proof_address(self, typed: str) -> str:
        """A typed proof recipient in the form it is compared and sent in, or ProofAddressError."""
        return typed.strip()

    def proof_allowed(self, *, organization: Organization, address: str) -> bool:
        """Whether a (normalised) proof recipient is a test profile's or on the allow-list."""
        return senders.allow_listed(organization=organization, kinds=[self.proof_kind], value=address)

    def no_profile_address(self) -> str:
        """Why a test profile cannot receive a proof of this channel."""
        return f"a profile has no {self.name} address: send {self.name} proofs to allow-listed addresses"

    def proof_key(self, address: str) -> str:
        """The form in which two proof recipients are the same one."""
        return address

    # --- sending -------------------------------------------------------------------------------

    def backend(self) -> ChannelBackend:
        """A new backend instance (backend_for keeps one per process): the channel's providers in
        order (`<NAME>_PROVIDERS`, messages.providers) if any are set, else its single backend."""
        from messages import providers

        entries = providers.configured(self.name)
        if not entries:
            return self.single_backend()
        return providers.FailoverBackend(
            self.name,
            [
                providers.Provider(
                    name=entry["name"],
                    backend=providers.build(self, entry),
                    rate_limit=float(entry.get("rate_limit", 0) or 0),
                )
                for entry in entries
            ],
        )

    def single_backend(self) -> ChannelBackend:
        """The backend of the single-provider settings (`backend_setting`)."""
        return import_string(getattr(settings, self.backend_setting))()

    def provider_backend(self, path: str, options: dict[str, Any]) -> ChannelBackend:
        """The backend of one provider of a list: its class's dotted path (default: the channel's
        backend setting), built with its options; ImproperlyConfigured for an option it does not
        take or a wrong value (ImportError for a path that is no class)."""
        path = path or getattr(settings, self.backend_setting)
        backend_class = import_string(path)
        checked_options(backend_class, path, options)
        return backend_class(**options)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<Channel {self.name}>"


# --- The registry ------------------------------------------------------------------------------

DEFAULT_CHANNELS = (
    "messages.channels.email.EMAIL",
    "messages.channels.sms.SMS",
    "messages.channels.push.PUSH",
)


@functools.cache
def _load(paths: tuple[str, ...]) -> dict[str, Channel]:
    loaded = [import_string(path) for path in paths]
    return {item.name: item for item in loaded}


def channels() -> dict[str, Channel]:
    """The registered channels by name, in the order of the TRANSACTIONAL_CHANNELS setting."""
    return _load(tuple(getattr(settings, "TRANSACTIONAL_CHANNELS", DEFAULT_CHANNELS)))


def channel(name: str) -> Channel:
    """The channel object of a name; KeyError for a channel that is not registered."""
    try:
        return channels()[name]
    except KeyError:
        raise KeyError(f"unknown channel '{name}'") from None


def channel_names() -> list[str]:
    return list(channels())


def channel_choices() -> list[tuple[str, str]]:
    """Model field choices: a callable, so registering a channel changes no migration."""
    return [(item.name, item.label) for item in channels().values()]


class _CachedBackends:
    """One backend instance per process and channel (and per organization with providers of its
    own: messages.org_providers), so connections are reused across sends."""

    def __init__(self) -> None:
        self._backends: dict[str, ChannelBackend] = {}

    def __call__(
        self, name: str, organization_id: int | None = None, *, check: bool = True
    ) -> ChannelBackend:
        """The backend of a channel: the organization's own providers if it has any enabled, else
        the settings'. `check=False`: no database read when this process knows the organization's
        (a sender thread; see org_providers.backend_of)."""
        if organization_id is not None:
            from messages import org_providers

            own = org_providers.backend_of(name, organization_id, check=check)
            if own is not None:
                return own
        backend = self._backends.get(name)
        if backend is None:
            backend = self._backends[name] = channel(name).backend()
        return backend

    def cache_clear(self) -> None:
        self._backends.clear()
        if "messages.org_providers" in sys.modules:
            sys.modules["messages.org_providers"].forget()


backend_for = _CachedBackends()
