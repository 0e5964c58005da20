"""An organization's own providers (messages.models.OrganizationProvider): their secrets, kept
encrypted; their changes, seen by every worker process without a restart; and the backend a send of
an organization goes through.

* Secrets: one JSON object per provider ({field: value}), encrypted with campaign.encryption
  (Fernet under ENCRYPTION_KEYS, as the webhook endpoints' secrets), rotated by
  `manage.py reencrypt_provider_secrets`. Never shown back, logged, nor put in an error message.
* Resolution: the organization's enabled providers of the channel in position order make one
  FailoverBackend (messages.providers) whose cool-downs and rate limits are keyed by the provider's
  row (two organizations' "twilio" are two limits); an organization with none uses the settings'
  backend (`backend_for(channel)`). Kept per process and (channel, organization), and rebuilt when
  that organization's providers change: a change bumps the generation PROVIDERS
  (campaign.generations), which each process reads at most every GENERATION_CHECK_SECONDS; only
  then are the organization's rows read again (no query per send), and its backend rebuilt only if
  they changed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from campaign import encryption, generations, senders
from messages import providers
from messages.channels import ChannelBackend, Recipient, RenderedMessage, SendResult
from messages.channels import channel as channel_of
from messages.models import Delivery, OrganizationProvider
from messages.provider_kinds import BuildContext, kind_of

logger = logging.getLogger(__name__)

PROVIDERS = "providers"  # the generation bumped by every change of an organization's providers


# --- secrets -----------------------------------------------------------------------------------


def secrets_of(provider: OrganizationProvider) -> dict[str, str]:
    """The provider's secrets in clear ({} when none); InvalidToken if no key opens them."""
    if not provider.secrets_encrypted:
        return {}
    opened = json.loads(encryption.decrypt(provider.secrets_encrypted))
    return {str(k): str(v) for k, v in opened.items()} if isinstance(opened, dict) else {}


def secrets_set(provider: OrganizationProvider) -> set[str]:
    """Which secrets are set (what the admin shows instead of their values)."""
    try:
        return {name for name, value in secrets_of(provider).items() if value}
    except encryption.InvalidToken:
        return set()


def set_secrets(provider: OrganizationProvider, secrets: Mapping[str, str]) -> None:
    """Keep only the kind's secrets that have a value, encrypted (not saved: the caller saves)."""
    kind = kind_of(provider.kind)
    kept = {item.name: secrets[item.name] for item in kind.secrets if secrets.get(item.name)}
    provider.secrets_encrypted = encryption.encrypt(json.dumps(kept)) if kept else ""


def changed(*, organization_id: int | None = None) -> None:
    """Every process rebuilds the backends of changed providers (this one at once, the others within
    GENERATION_CHECK_SECONDS of the caller's commit)."""
    generations.bump(PROVIDERS)
    generations.forget_checks()
    transaction.on_commit(generations.forget_checks)


def save(provider: OrganizationProvider, *, secrets: Mapping[str, str] | None = None) -> None:
    """Save a provider (its channel from its kind; its secrets, when given, replacing the stored)."""
    provider.channel = kind_of(provider.kind).channel
    if secrets is not None:
        set_secrets(provider, secrets)
    with transaction.atomic():
        provider.save()
        changed(organization_id=provider.organization_id)


def delete(found: Iterable[OrganizationProvider]) -> None:
    with transaction.atomic():
        for provider in found:
            provider.delete()
        changed()


def reencrypt_secrets() -> int:
    """Every provider's secrets encrypted again under the first key of ENCRYPTION_KEYS (after a new
    key was put first); InvalidToken if one cannot be opened by any key (then none is written)."""
    found = list(
        OrganizationProvider.objects.exclude(secrets_encrypted="")
        .only("pk", "secrets_encrypted")
        .order_by("pk")
    )
    rotated = [(p.pk, encryption.rotate(p.secrets_encrypted)) for p in found]
    with transaction.atomic():
        for pk, token in rotated:
            OrganizationProvider.objects.filter(pk=pk).update(secrets_encrypted=token)
    return len(rotated)


# --- resolution --------------------------------------------------------------------------------


def rate_key(provider: OrganizationProvider) -> str:
    """The provider's key in the shared state (rate window, failures, cool-down): its row's."""
    return f"org{provider.organization_id}:{provider.pk}"


def without_own_providers(deliveries: QuerySet[Delivery], channel: str) -> QuerySet[Delivery]:
    """The deliveries of organizations that send this channel through the installation's providers
    (no enabled provider of their own): what an installation's provider (its receipts, replies,
    webhooks authenticated with the installation's secrets) may speak about."""
    own = OrganizationProvider.objects.filter(
        organization_id=OuterRef("organization_id"), channel=channel, enabled=True
    )
    return deliveries.exclude(Exists(own))


def build(channel: str, rows: list[OrganizationProvider]) -> ChannelBackend:
    """The FailoverBackend of an organization's providers of one channel, in order."""
    built = []
    for row in rows:
        kind = kind_of(row.kind)
        backend = kind.build(
            kind,
            dict(row.options or {}),
            secrets_of(row),
            BuildContext(provider_id=row.pk, organization_id=row.organization_id, provider_name=row.name),
        )
        built.append(
            providers.Provider(name=row.name, backend=backend, rate_limit=row.rate_limit, key=rate_key(row))
        )
    return providers.FailoverBackend(channel, built)


class Unbuildable:
    """The providers of an organization that cannot be built: its sends wait (a temporary failure)
    rather than leave through a provider the organization did not choose."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        return SendResult(
            providers.TEMPORARY,
            provider_response=f"the organization's providers cannot be built ({self.reason}): see the admin",
        )


@dataclass(frozen=True)
class _Entry:
    generation: int
    fingerprint: tuple[Any, ...]
    backend: ChannelBackend | None  # None: the organization has none of its own


_entries: dict[tuple[str, int], _Entry] = {}
_lock = threading.Lock()


def backend_of(channel: str, organization_id: int, *, check: bool = True) -> ChannelBackend | None:
    """The organization's own backend for the channel, or None (the settings' then).

    `check=False` answers from this process's cache without reading the database when the
    organization has an entry (a sender thread touches no database: the task's thread checked it
    just before, in `sends_wait_on_network`)."""
    key = (channel, organization_id)
    entry = _entries.get(key)
    if entry is not None and not check:
        return entry.backend
    generation = generations.current(PROVIDERS)
    if entry is not None and entry.generation == generation:
        return entry.backend
    rows = list(
        OrganizationProvider.objects.filter(
            organization_id=organization_id, channel=channel, enabled=True
        ).order_by("position", "id")
    )
    fingerprint = tuple((row.pk, row.updated_at) for row in rows)
    if entry is not None and entry.fingerprint == fingerprint:
        backend = entry.backend
    elif not rows:
        backend = None
    else:
        try:
            backend = build(channel, rows)
        except Exception as error:  # a row the admin accepted but cannot be built (a key rotated away)
            # Its class only: a backend's error may quote what it was given.
            logger.error(
                "The providers of organization %s for %s cannot be built (%s)",
                organization_id,
                channel,
                error.__class__.__name__,
            )
            backend = Unbuildable(error.__class__.__name__)
    with _lock:
        _entries[key] = _Entry(generation, fingerprint, backend)
    if channel == "sms" and (entry is None or entry.backend is not backend):
        _close_old_binds(organization_id, backend)
    return backend


def _close_old_binds(organization_id: int, backend: ChannelBackend | None) -> None:
    """The organization's SMPP binds its providers no longer use are closed (a provider deleted,
    disabled, or its host, account or name changed): no bind nor reader thread of a gone provider
    stays for the rest of the process, and no receipt arrives any more on a bind nobody sends on."""
    from messages.channels import smpp

    keep = [
        provider.backend.bind_key()
        for provider in getattr(backend, "providers", ())
        if isinstance(provider.backend, smpp.SmppSmsBackend)
    ]
    closed = smpp.close_binds_of(organization_id, keep=keep)
    if closed:
        logger.info(
            "Closed %s SMPP bind(s) of organization %s: its providers changed", closed, organization_id
        )


def forget() -> None:
    """Drop this process's backends of organizations (tests; backend_for.cache_clear)."""
    with _lock:
        _entries.clear()


def _forget_in_child() -> None:
    """A forked child builds its own backends (their clients and binds are the parent's)."""
    global _entries, _lock
    _entries, _lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


# --- a test send ---------------------------------------------------------------------------------


class TestRefused(Exception):
    """A test send refused (a recipient off the proof allow-list, too many this minute, the
    provider's secrets unreadable), with a reason a person can act on."""


def send_test(*, provider: OrganizationProvider, typed: str, user_id: int | None) -> SendResult:
    """One message through this provider alone (no failover, no rate limit), to a recipient a proof
    could go to (a test profile's address or the proof allow-list, campaign.senders), counted as a
    proof: an administrator checks the credentials before the provider takes real traffic."""
    of_channel = channel_of(provider.channel)
    organization = provider.organization
    try:
        address = of_channel.proof_address(senders.bounded_proof_recipient(typed))
    except senders.ProofRefused as error:
        raise TestRefused(str(error)) from None
    if not of_channel.proof_allowed(organization=organization, address=address):
        raise TestRefused(f"'{address[:80]}' is neither a test profile's nor on the proof allow-list")
    try:
        senders.count_proofs(organization=organization, user_id=user_id, recipients=1)
    except senders.ProofRefused as error:
        raise TestRefused(str(error)) from None
    try:
        kind = kind_of(provider.kind)
        backend = kind.build(
            kind, dict(provider.options or {}), secrets_of(provider), BuildContext(provider.pk)
        )
    except encryption.InvalidToken:
        raise TestRefused("its secrets cannot be decrypted (ENCRYPTION_KEYS): type them again") from None
    except ImproperlyConfigured as error:  # saved before a check existed, or a setting changed since
        raise TestRefused(f"it cannot be built ({str(error)[:200]}): correct it in its form") from None
    text = f"A test of the provider '{provider.name}' of {organization.name or organization.slug}."
    rendered = RenderedMessage(
        parts={
            part: ("Test message" if part in ("subject", "title") else text)
            for part in of_channel.content_keys
        },
        from_name=of_channel.default_sender_name(organization),
        from_address=organization.sender_address,
        data={"test": "true"},
    )
    try:
        return backend.send(rendered, Recipient(address=address))
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()
