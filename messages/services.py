"""Transactional messages' content: drafts and their checks, versions, composing and sending,
unsubscribe links, previews and proofs.

Statuses move in messages.lifecycle; the workflows that move an event type and its message together
(publish, pause, resume, unpublish) are the events app's (events.publication).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from django.conf import settings
from django.core import signing
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from campaign import senders
from campaign.metrics import DELIVERIES
from campaign.models import OPT_OUT_COLUMNS, CustomResource, Organization, Profile, Quarantine
from messages import lifecycle, tracking
from messages.channels import (
    Recipient,
    RenderedMessage,
    SendResult,
    backend_for,
    max_send_seconds,
    waits_on_network,
)
from messages.channels import channel as channel_of
from messages.lifecycle import PublicationError
from messages.models import Delivery, MessageVersion, TransactionalMessage
from messages.rendering import (
    TemplateError,
    Vocabulary,
    check_render_bounds,
    chosen_variant,
    failing_template,
    render_content,
    validate_content,
    validate_template,
)


@dataclasses.dataclass(frozen=True)
class ContentProblem:
    """Why a content cannot be sent, naming its part (`subject`, `variants.fr.subject`...): the
    editor shows it on the part's field, the configuration file names the part in the file."""

    part: str
    message: str
    line: int | None = None
    missing: bool = False  # a required part is empty (rather than wrong)

    def __str__(self) -> str:
        return (
            self.message if self.missing else str(TemplateError(self.message, part=self.part, line=self.line))
        )


# A variant is keyed by a language as `AC_language` or a profile's language names it and as the
# renderer chooses it (the code itself, then its language alone): an ISO 639 code of 2 or 3 letters,
# then a script and a region, each optional (`fr`, `pt-BR`, `zh-Hant`, `es-419`, `zh_Hant_TW`).
VARIANT_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z]{4})?(?:[-_](?:[A-Za-z]{2}|[0-9]{3}))?$")


def content_problems(
    *,
    channel: str,
    content: dict[str, Any],
    schema: dict[str, Any] | None,
    sample_context: dict[str, Any] | None = None,
    require_parts: bool = True,
) -> list[ContentProblem]:
    """THE checks of a message's content, wherever it comes from (the editor, a publication, the
    configuration file): required parts present (unless a draft may be incomplete), each template
    compiles and uses only the event's variables, language variants alike, and (given the sample
    context) no template goes beyond a bound of rendering."""
    of_channel = channel_of(channel)
    keys = of_channel.content_keys
    problems = []
    if require_parts:
        problems = [
            ContentProblem(part=group[0], message=f"The message needs a {' or '.join(group)}.", missing=True)
            for group in of_channel.missing_parts(content)
        ]
    vocabulary = Vocabulary.from_schema(schema) if schema else None
    for key in keys:
        try:
            validate_template(str(content.get(key) or ""), part=key, vocabulary=vocabulary)
        except TemplateError as error:
            problems.append(ContentProblem(part=key, message=error.message, line=error.line))
    try:
        validate_content({"variants": content.get("variants") or {}}, vocabulary=vocabulary, keys=keys)
    except TemplateError as error:
        problems.append(ContentProblem(part=error.part, message=error.message, line=error.line))
    variants = content.get("variants")
    for language in variants if isinstance(variants, dict) else ():
        if not VARIANT_LANGUAGE.match(str(language)):
            problems.append(
                ContentProblem(
                    part=f"variants.{language}",
                    message="not a language code (fr, pt-BR, zh-Hant, es-419): no event or profile "
                    "could choose this variant",
                )
            )
    if sample_context is not None and not any(not p.missing for p in problems):
        try:
            check_render_bounds(content, keys=keys, context=sample_context)
        except TemplateError as error:
            problems.append(ContentProblem(part=error.part, message=error.message, line=error.line))
    return problems


def part_length_problems(*, channel: str, content: dict[str, Any]) -> list[ContentProblem]:
    """Parts longer than the draft's column keeps (a subject 998 characters, a push title 255), in
    the default content and in each language variant alike: the editor's bound of every part."""
    problems = []
    variants = content.get("variants")
    languages = variants.items() if isinstance(variants, dict) else ()
    for prefix, parts in [("", content), *((f"variants.{code}.", v) for code, v in languages)]:
        if not isinstance(parts, dict):
            continue
        for part in channel_of(channel).parts:
            limit = getattr(TransactionalMessage._meta.get_field(part.draft_column), "max_length", None)
            value = parts.get(part.name)
            if limit is not None and isinstance(value, str) and len(value) > limit:
                problems.append(
                    ContentProblem(
                        part=f"{prefix}{part.name}",
                        message=f"at most {limit:,} characters (it has {len(value):,})",
                    )
                )
    return problems


def content_sender_problems(message: TransactionalMessage, content: dict[str, Any]) -> dict[str, str]:
    """{"from"/"replyTo"/"from.name": why} for the content's senders outside the organization's
    sender domains (checked again on every publication, since a domain may be withdrawn after the
    draft was saved), and a sender name its channel refuses (an SMS sender: `sender_name`)."""
    sender = content.get("from") or {}
    configuration = message.configuration
    of_channel = channel_of(configuration.channel)
    problems = senders.sender_problems(
        organization=configuration.organization,
        from_address=str(sender.get("address") or ""),
        reply_to=str(content.get("replyTo") or ""),
        uses_default_sender=of_channel.uses_default_sender,
    )
    if of_channel.sender_name_label:
        try:
            of_channel.sender_name(str(sender.get("name") or ""))
        except ValueError as error:
            problems["from.name"] = f"{of_channel.sender_name_label}: {error}"
    return problems


def snapshot_draft(*, message: TransactionalMessage, user: Any = None) -> MessageVersion:
    """Validate the draft and snapshot it as a new immutable version if it changed (else the live
    one): the message's part of a publication (events.publication makes it live)."""
    configuration = message.configuration
    content = message.draft_content()
    problems = content_problems(
        channel=configuration.channel,
        content=content,
        schema=configuration.published_schema,
        sample_context=sample_context(message),
    )
    errors = [str(problem) for problem in problems]
    errors += [f"{key}: {problem}" for key, problem in content_sender_problems(message, content).items()]
    if errors:
        raise PublicationError(errors)
    version = message.live_version
    if version is None or version.content != content:
        number = (message.versions.aggregate(top=Max("number"))["top"] or 0) + 1
        version = MessageVersion.objects.create(
            message=message,
            number=number,
            content=content,
            published_by=user if getattr(user, "pk", None) else None,
        )
    return version


def save_draft(*, message: TransactionalMessage) -> None:
    """Save the draft's content only: the status and the live version belong to the lifecycle
    functions, and a stale copy of the message must never write them back."""
    message.save(update_fields=[*TransactionalMessage.DRAFT_FIELDS, "updated_at"])


# --- Composing and sending -------------------------------------------------------------------

# An unsubscribe link is `<profile id>.<signature>`: an HMAC-SHA256 (256 bits, under SECRET_KEY) of
# the profile's id, organization and address. Without the key no link can be guessed; the address in
# the signature means that even with the key, counting through ids finds no one's address. Links of
# the first format (Django's signed `{"p", "o"}`, which carried only ids) are still honoured, checked
# with the keys in use, because they are in the mailboxes of people who may click them today.
UNSUBSCRIBE_SALT = "messages.unsubscribe.v2"
FIRST_FORMAT_SALT = "messages.unsubscribe"


def _unsubscribe_signer() -> signing.Signer:
    return signing.Signer(salt=UNSUBSCRIBE_SALT, algorithm="sha256")


def _unsubscribe_value(profile: Profile) -> str:
    return f"{profile.pk}:{profile.organization_id}:{profile.email.lower()}"


def unsubscribe_token(*, profile: Profile) -> str:
    return f"{profile.pk}.{_unsubscribe_signer().signature(_unsubscribe_value(profile))}"


def unsubscribe_url(*, profile: Profile, event_pkey: str = "") -> str:
    """The profile's link; with the event's PKey (unguessable), an opt-out through it is counted in
    that event's message version's report."""
    token = unsubscribe_token(profile=profile)
    base = settings.PUBLIC_URL.rstrip("/") or "http://localhost:8000"
    return f"{base}{reverse('unsubscribe', args=[token])}" + (f"?e={event_pkey}" if event_pkey else "")


def profile_for_unsubscribe_token(token: str) -> Profile | None:
    """The profile a link was made for, or None for a link that was altered or made with another key."""
    if len(token) > 200:
        return None
    if ":" in token:
        try:
            data = signing.loads(token, salt=FIRST_FORMAT_SALT)
        except signing.BadSignature:
            return None
        data = data if isinstance(data, dict) else {}
        profile_pk, organization_pk = data.get("p"), data.get("o")
        if not isinstance(profile_pk, int) or not isinstance(organization_pk, int):
            return None
        return Profile.objects.filter(pk=profile_pk, organization_id=organization_pk).first()
    profile_id, _, signature = token.partition(".")
    if not (profile_id.isascii() and profile_id.isdigit() and len(profile_id) <= 18 and signature):
        return None
    profile = Profile.objects.filter(pk=int(profile_id)).first()
    if profile is None:
        return None
    signer = _unsubscribe_signer()
    value = _unsubscribe_value(profile)
    for key in (signer.key, *signer.fallback_keys):
        if constant_time_compare(signature, signer.signature(value, key)):
            return profile
    return None


# Told of every opt-out through a message's link, with the PKey the link carried ("" for none):
# the events app counts it for its reports (handed in at start-up, as messages knows no event).
OPT_OUT_LISTENERS: list[Callable[[Profile, str], None]] = []


def opt_out(*, profile: Profile, event_pkey: str = "") -> None:
    """The link opts out of every channel, as the single opt-out flag of earlier versions did (it
    carries no channel: a profile-based SMS may quote it too)."""
    flags = dict.fromkeys(OPT_OUT_COLUMNS.values(), True)
    Profile.objects.filter(pk=profile.pk).update(**flags, updated_at=timezone.now())
    for listener in OPT_OUT_LISTENERS:
        listener(profile, event_pkey)


class EventTypeLike(Protocol):
    """What a message reads of an event's type (events.models.EventConfiguration has it)."""

    @property
    def event_id(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def organization(self) -> Organization: ...


class EventLike(Protocol):
    """What a message reads of the event it is sent for (events.models.Event has it; a preview
    makes a SampleEvent): messages knows events only by this shape, never by their model."""

    @property
    def pk(self) -> Any: ...
    @property
    def pkey(self) -> str: ...
    @property
    def ctx(self) -> dict[str, Any]: ...
    @property
    def created_at(self) -> dt.datetime | None: ...
    @property
    def configuration(self) -> EventTypeLike: ...


@dataclasses.dataclass(frozen=True)
class SampleEvent:
    """The stand-in event of a preview or a proof: sample data, never stored."""

    configuration: EventTypeLike
    ctx: dict[str, Any]
    pk: None = None
    pkey: str = "PREVIEW"
    created_at: dt.datetime | None = None
    email: str = ""
    mobile_phone: str = ""
    push_platform: str = ""
    registration_token: str = ""
    application: str = ""


def recipient_for(*, event: EventLike, profile: Profile | None) -> Recipient:
    """Where an event's message goes: the profile's address, else the one the event carries."""
    of_channel = channel_of(event.configuration.channel)
    if profile is not None:
        return of_channel.profile_recipient(event, profile)
    return of_channel.event_recipient(event)


def template_context(
    *,
    event: EventLike | None,
    ctx: dict[str, Any],
    profile: Profile | None,
    event_id: str,
    joined_profile: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The plain data a template sees: never a model instance, never a callable. `joined_profile`:
    the fields of a profile an event-based message is enriched with (`profile.*`, no unsubscribe
    link: the message is not the profile's)."""
    context: dict[str, Any] = {
        "ctx": ctx,
        "event": {
            "PKey": event.pkey if event else "PREVIEW",
            "eventId": event_id,
            "received": ((event.created_at if event else None) or timezone.now()).isoformat(),
        },
    }
    if profile is None and joined_profile is not None:
        context["profile"] = joined_profile
    if profile is not None:
        context["profile"] = profile.as_context()
        context["unsubscribe_url"] = (
            unsubscribe_url(profile=profile, event_pkey=event.pkey if event else "")
            if profile.pk
            else "#unsubscribe"
        )
    return context


def event_language(*, profile: Profile | None, ctx: dict[str, Any]) -> str:
    """The language an event's message is chosen in: its profile's, else the event's `AC_language`."""
    return (profile.language if profile else "") or str(ctx.get("AC_language") or "")


def compose(
    *,
    version: MessageVersion | None,
    event: EventLike,
    profile: Profile | None = None,
    content: dict[str, Any] | None = None,
    ctx: dict[str, Any] | None = None,
    joined_profile: dict[str, Any] | None = None,
    language: str | None = None,
) -> RenderedMessage:
    """Render a message version (or a given content, for previews) for one event, in the language
    the profile or the event's `AC_language` names (a preview may name another: "" for the default
    content); `ctx` and `joined_profile`: the event's data as its enrichments made it
    (events.enrichment)."""
    configuration = event.configuration
    if content is None:
        if version is None:
            raise ValueError("compose needs a version or a content")
        content = version.content
    ctx = ctx if ctx is not None else event.ctx
    if language is None:
        language = event_language(profile=profile, ctx=ctx)
    context = template_context(
        event=event if event.pk else None,
        ctx=ctx,
        profile=profile,
        event_id=configuration.event_id,
        joined_profile=joined_profile,
    )
    of_channel = channel_of(configuration.channel)
    parts = render_content(content, keys=of_channel.content_keys, context=context, language=language)
    organization = configuration.organization
    sender = content.get("from") or {}
    unsubscribe = context["unsubscribe_url"] if profile is not None and profile.pk else ""
    parts, headers = of_channel.finish(parts, unsubscribe_url=unsubscribe)
    tracked = None
    if version is not None and event.pk and of_channel.tracked_part:  # an event's send, never a preview
        opens, clicks = of_channel.tracking_switches(content)
        part = parts.get(of_channel.tracked_part, "")
        if of_channel.short_links:
            tracked = tracking.rewrite_text(part, clicks=clicks, unsubscribe_url=unsubscribe)
        else:
            tracked = tracking.rewrite(part, opens=opens, clicks=clicks, unsubscribe_url=unsubscribe)
        if tracked is not None:
            parts = {**parts, of_channel.tracked_part: tracked.html}
    return RenderedMessage(
        parts=parts,
        from_name=sender.get("name") or of_channel.default_sender_name(organization),
        from_address=sender.get("address") or organization.sender_address,
        reply_to=str(content.get("replyTo") or ""),
        headers=headers,
        data={"eventId": configuration.event_id, "PKey": event.pkey},
        tracking_id=tracked.tracking_id if tracked else "",
        tracked_links=tracked.links if tracked else (),
        expires_at=getattr(event, "expiration_at", None),
    )


def send(
    *,
    channel: str,
    rendered: RenderedMessage,
    recipient: Recipient,
    organization_id: int | None = None,
    check: bool = False,
) -> SendResult:
    """Send through the organization's providers of the channel (else the settings'): as
    `sends_wait_on_network` found them just before on the task's thread (a send may run on a
    sender thread, which reads no database), or looked up again (`check`: a proof, on its request).
    Within a claim (messages.providers.send_deadline), a send that could outlive the claim's lease
    is not made (`SendResult.lease_too_short`); a list of providers checks each one it tries."""
    from messages import providers

    backend = backend_for(channel, organization_id, check=check)
    if not isinstance(backend, providers.FailoverBackend):
        bound = max_send_seconds(backend)
        if not providers.fits(bound):
            return providers.too_short(channel, bound)
    return backend.send(rendered, recipient)


def longest_send(channel: str, organization_id: int | None = None) -> float:
    """The longest one send of this channel (for this organization) can take (its backend's
    `max_send_seconds`, at most the send budget): how much lease a claim keeps before its send."""
    from messages import providers

    return providers.bounded(max_send_seconds(backend_for(channel, organization_id)))


def sends_wait_on_network(channel: str, organization_id: int | None = None) -> bool:
    """Whether a send of this channel (for this organization) waits on a server (SMTP, a gateway),
    so that several may run at once on threads; sends that stay in the process (tests, files) run
    where they are asked. It also brings the organization's backend up to date (its providers'
    changes), which `send` then uses."""
    return waits_on_network(backend_for(channel, organization_id))


def delivery_row(
    *,
    message: TransactionalMessage,
    version: MessageVersion | None,
    recipient: Recipient,
    result: SendResult,
    duration_ms: int,
    is_proof: bool = False,
    rendered: RenderedMessage | None = None,
    displayed: RenderedMessage | None = None,
) -> Delivery:
    """The (unsaved) record of one send, counted in the metrics (an event's send is linked to its
    event by the events app, in the same statement: events.statements). `displayed`: what its
    content keeps instead of `rendered` (an event's sensitive values masked), if given."""
    DELIVERIES.labels(message.channel, result.outcome).inc()
    return Delivery(
        organization_id=message.configuration.organization_id,
        message=message,
        version=version,
        is_proof=is_proof,
        channel=message.channel,
        recipient=recipient.address,
        outcome=result.outcome,
        provider_message_id=result.provider_message_id[:998],
        provider_response=result.provider_response[:4000],
        duration_ms=duration_ms,
        provider=result.provider[:64],
        attempts=list(result.attempts),
        tracking_id=rendered.tracking_id if rendered is not None else "",
        tracked_links=list(rendered.tracked_links) if rendered is not None else [],
        content=delivered_content(displayed or rendered) if rendered is not None else {},
    )


def delivered_content(rendered: RenderedMessage) -> dict[str, str]:
    """What a delivery keeps of what was sent: the rendered parts and the sender, each bounded by
    RENDER_MAX_OUTPUT_CHARS (the bound of a render, so a part is kept whole)."""
    limit = int(settings.RENDER_MAX_OUTPUT_CHARS)
    kept = {name: str(value)[:limit] for name, value in rendered.parts.items()}
    if rendered.from_address or rendered.from_name:
        kept["from"] = f"{rendered.from_name} <{rendered.from_address}>"[:limit]
    return kept


def quarantine(*, organization_id: int, channel: str, address: str, reason: str) -> None:
    """Stop sending to an address that failed for good; its next event is `ignored`."""
    Quarantine.objects.get_or_create(
        organization_id=organization_id,
        channel=channel,
        address_digest=Quarantine.digest_of(address),
        defaults={"address": address.lower(), "reason": reason[:500]},
    )


# --- Authoring: preview, proofs, version differences -----------------------------------------

PROOF_PREFIX = "[Proof] "


def configuration_schema(message: TransactionalMessage) -> dict[str, Any]:
    """The schema a message is written against: the published one, else the configuration as it
    stands (the event side's rule, handed in)."""
    return lifecycle.event_side().schema_of(message)


def variants_never_chosen(*, message: TransactionalMessage, variants: dict[str, Any] | None) -> list[str]:
    """The language variants no event can choose: the language comes from a profile or from the
    event's `AC_language`, so an event-based message whose event has no AC_language field always
    sends its default content."""
    if not variants or message.configuration.targeting == "profile":
        return []
    if any(field["name"] == "AC_language" for field in configuration_schema(message).get("fields", [])):
        return []
    return sorted(variants)


SAMPLE_PROFILE = {"email": "jane.doe@example.com", "first_name": "Jane", "last_name": "Doe", "language": "en"}


def joins_profile(schema: dict[str, Any]) -> bool:
    """An event-based message enriched with a profile's fields (events.enrichment) uses `profile.*`."""
    return any(join.get("kind") == "profile" for join in schema.get("enrichments") or [])


def joined_columns(schema: dict[str, Any]) -> dict[str, list[str]]:
    """Per collection, what its items' joined rows offer templates (`product.title`): the columns of
    each joined custom resource but its key (which the item has already), for the editor's help."""
    joins = [
        j for j in schema.get("enrichments") or [] if j.get("kind") == "resource" and j.get("resourceId")
    ]
    columns = dict(
        CustomResource.objects.filter(pk__in=[j["resourceId"] for j in joins]).values_list("pk", "columns")
    )
    offered: dict[str, list[str]] = {}
    for join in joins:
        resource_columns = columns.get(join["resourceId"]) or []
        offered.setdefault(join["collection"], []).extend(
            f"{join['name']}.{column}" for column in resource_columns if column != join.get("field")
        )
    return offered


def sample_profile(message: TransactionalMessage) -> Profile | None:
    """A stand-in profile for previews of messages that use one (never saved)."""
    if message.configuration.targeting != "profile" and not joins_profile(configuration_schema(message)):
        return None
    return Profile(organization=message.configuration.organization, **SAMPLE_PROFILE)


def sample_template_context(
    *, ctx: dict[str, Any], targeting: str, event_id: str, with_profile: bool = False
) -> dict[str, Any]:
    """What a template sees in a preview, for a configuration not saved yet (the file's import)."""
    profile = Profile(**SAMPLE_PROFILE) if targeting == "profile" or with_profile else None
    return template_context(event=None, ctx=ctx, profile=profile, event_id=event_id)


def sample_data(message: TransactionalMessage) -> dict[str, Any]:
    """The sample `ctx` of previews and save-time checks, generated from the field types."""
    return lifecycle.event_side().sample_ctx(configuration_schema(message))


def sample_context(message: TransactionalMessage) -> dict[str, Any]:
    """What a template sees in a preview: the sample data, and the stand-in profile."""
    return template_context(
        event=None,
        ctx=sample_data(message),
        profile=sample_profile(message),
        event_id=message.configuration.event_id,
    )


def profile_sample(*, message: TransactionalMessage, profile: Profile) -> dict[str, Any] | None:
    """A test profile's own sample data for the message's event (None: it has none), checked again
    with the API's rules as the schema stands now (ProofError naming the field if it fits no more)."""
    side = lifecycle.event_side()
    sample = side.sample_of(message, profile)
    if sample is None:
        return None
    try:
        return side.check_ctx(configuration_schema(message), sample)
    except lifecycle.SampleDataError as error:
        raise ProofError(
            f"the sample data of the test profile {profile}: {error.field}: {error.message} "
            "(an administrator corrects it under Test profiles' sample data)"
        ) from None


def preview_message(
    *,
    message: TransactionalMessage,
    ctx: dict[str, Any] | None = None,
    content: dict[str, Any] | None = None,
    profile: Profile | None = None,
    language: str | None = None,
) -> RenderedMessage:
    """Render the draft (or a given content) with sample data generated from the field types (or
    given), joined to the custom resources' rows as events are (events.enrichment), in the language
    an event would choose (or the one given: "" for the default content)."""
    configuration = message.configuration
    if ctx is None:
        ctx = sample_data(message)
    ctx = lifecycle.event_side().enrich_sample(message, ctx)
    event = SampleEvent(configuration=configuration, ctx=ctx)
    return compose(
        version=None,
        event=event,
        profile=profile or sample_profile(message),
        content=content if content is not None else message.draft_content(),
        ctx=ctx,
        language=language,
    )


@dataclasses.dataclass(frozen=True)
class UnsavedPreview:
    """The editor's preview of a content not saved yet: what it renders to, and the variant that
    was used (None: the default content); or the problems that kept it from rendering."""

    rendered: RenderedMessage | None = None
    variant: str | None = None
    problems: tuple[ContentProblem, ...] = ()


def preview_unsaved(
    *, message: TransactionalMessage, content: dict[str, Any], ctx: dict[str, Any], language: str | None
) -> UnsavedPreview:
    """Render a content as the editor holds it, before it is saved: the save's checks first
    (templates, the event's variables, language codes), then the render an event would get, through
    the same bounded renderer, with the sample data, in `language` (None: the one an event with this
    sample data would choose, "" the default content) chosen as events choose their variant."""
    problems = content_problems(
        channel=message.channel,
        content=content,
        schema=configuration_schema(message),
        require_parts=False,
    )
    if problems:
        return UnsavedPreview(problems=tuple(problems))
    profile = sample_profile(message)
    if language is None:
        language = event_language(profile=profile, ctx=ctx)
    variant = chosen_variant(content, language)
    try:
        rendered = preview_message(
            message=message, ctx=ctx, content=content, profile=profile, language=language
        )
    except TemplateError as error:  # a bound of rendering, naming the part
        problem = ContentProblem(part=error.part, message=error.message, line=error.line)
        return UnsavedPreview(variant=variant, problems=(problem,))
    except Exception as error:  # what the sample data makes of a template: said, not raised
        part, line = failing_template(error)
        problem = ContentProblem(part=part, message=f"{error.__class__.__name__}: {error}", line=line)
        return UnsavedPreview(variant=variant, problems=(problem,))
    return UnsavedPreview(rendered=rendered, variant=variant)


class ProofError(Exception):
    pass


def send_proof(
    *,
    message: TransactionalMessage,
    addresses: list[str],
    profiles: list[Profile] | None = None,
    ctx: dict[str, Any] | None = None,
    user: Any = None,
) -> list[Delivery]:
    """Send the rendered draft to test profiles or allow-listed addresses, marked `[Proof]`.

    A typed address must be a test profile's or on the organization's proof allow-list
    (campaign.senders); each recipient counts towards the user's PROOF_RATE_PER_MINUTE, and a proof
    that would pass it is refused whole. Recorded as deliveries (is_proof), never as events, so it
    counts in no event statistics.
    """
    configuration = message.configuration
    organization = configuration.organization
    of_channel = channel_of(configuration.channel)
    targets: dict[str, tuple[Recipient, Profile | None]] = {}
    for typed in (a.strip() for a in addresses):
        if not typed:
            continue
        try:
            address = of_channel.proof_address(senders.bounded_proof_recipient(typed))
        except senders.ProofRefused as error:
            raise ProofError(str(error)) from None
        if not of_channel.proof_allowed(organization=organization, address=address):
            raise ProofError(
                f"'{address}' is neither a test profile's nor on the proof allow-list "
                "(an administrator declares them)"
            )
        targets.setdefault(of_channel.proof_key(address), (Recipient(address=address), None))
    for profile in profiles or []:
        if profile.organization_id != configuration.organization_id:
            raise ProofError("a test profile must belong to the message's organization")
        if not profile.is_test:
            raise ProofError(f"the profile {profile} is not a test profile")
        if not of_channel.profile_has_address:
            raise ProofError(of_channel.no_profile_address())
        address = of_channel.profile_address(profile)
        if not address:
            raise ProofError(f"the profile {profile} has no {of_channel.name} address")
        try:  # a profile saved before its address was checked: the typed addresses' own rule
            address = of_channel.proof_address(address)
        except senders.ProofRefused as error:
            raise ProofError(f"the test profile {profile}: {error}") from None
        name = " ".join(p for p in (profile.first_name, profile.last_name) if p)
        targets[of_channel.proof_key(address)] = (Recipient(address=address, name=name), profile)
    if not targets:
        raise ProofError("give at least one test address or test profile")
    problems = content_sender_problems(message, message.draft_content())
    if problems:
        raise ProofError(" ".join(f"{key}: {problem}" for key, problem in problems.items()))
    # The quota first: a proof beyond it is refused before anything is rendered (rendering is the
    # cost a quota protects), and each recipient counts.
    try:
        senders.count_proofs(
            organization=organization, user_id=getattr(user, "pk", None), recipients=len(targets)
        )
    except senders.ProofRefused as error:
        raise ProofError(str(error)) from None
    first_part = of_channel.proof_part
    ready = []
    rendered_for: dict[int | None, RenderedMessage] = {}  # typed addresses share one render
    for recipient, test_profile in targets.values():
        key = test_profile.pk if test_profile is not None else None
        if key not in rendered_for:
            own = profile_sample(message=message, profile=test_profile) if test_profile else None
            rendered = preview_message(
                message=message, ctx=own if own is not None else ctx, profile=test_profile
            )
            parts = {**rendered.parts, first_part: PROOF_PREFIX + rendered.parts.get(first_part, "")}
            rendered_for[key] = dataclasses.replace(rendered, parts=parts)
        ready.append((recipient, rendered_for[key]))
    deliveries = []
    for recipient, rendered in ready:
        started = time.monotonic()
        # A proof leaves the way the organization's messages do (its own providers, if any).
        result = send(
            channel=of_channel.name,
            rendered=rendered,
            recipient=recipient,
            organization_id=organization.pk,
            check=True,
        )
        delivery = delivery_row(
            message=message,
            version=None,
            recipient=recipient,
            result=result,
            duration_ms=int((time.monotonic() - started) * 1000),
            is_proof=True,
            rendered=rendered,
        )
        delivery.save(force_insert=True)
        deliveries.append(delivery)
    sent = sum(1 for d in deliveries if d.outcome == Delivery.Outcome.SENT)
    lifecycle.record_action(message, action="proof", user=user, note=f"{sent} of {len(deliveries)} sent")
    return deliveries


def content_difference(
    *, older: dict[str, Any], newer: dict[str, Any], channel: str
) -> list[tuple[str, str]]:
    """(part, HTML table) for each content part that differs between two contents."""
    import difflib
    import json as json_module

    differences = []
    keys = [*channel_of(channel).content_keys, "from", "replyTo", "variants", "tracking"]
    for key in keys:
        before, after = older.get(key, ""), newer.get(key, "")
        if before == after:
            continue
        as_lines = [
            (
                json_module.dumps(value, indent=2, sort_keys=True)
                if isinstance(value, dict)
                else str(value or "")
            ).splitlines()
            for value in (before, after)
        ]
        table = difflib.HtmlDiff(wrapcolumn=80).make_table(
            as_lines[0], as_lines[1], "before", "after", context=True, numlines=2
        )
        differences.append((key, table))
    return differences
