"""Writes about organizations and their credentials: creation, secrets shown once, tokens, revocation."""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaign import senders, throttling
from campaign.auth import forget_tokens
from campaign.models import AccessToken, ApiCredential, Organization, hash_secret


class InvalidClient(Exception):
    """Unknown API key, wrong secret, or a revoked credential."""


class SlowDown(Exception):
    """Too many wrong secrets for this client id, or from this address, in the last minute."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class IssuedCredential:
    credential: ApiCredential
    client_secret: str  # shown once; only its hash is stored


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


def create_organization(*, slug: str, name: str = "", sender_address: str = "") -> Organization:
    """A new organization; its default sender's domain becomes its first sender domain."""
    organization = Organization(
        slug=slug, name=name or slug, sender_name=name or slug, sender_address=sender_address
    )
    organization.full_clean()
    problem = senders.default_sender_problem(organization, sender_address)
    if problem:
        raise ValidationError({"sender_address": [problem]})
    with transaction.atomic():
        organization.save()
        senders.declare_default_sender_domain(organization)
    return organization


def create_api_credential(*, organization: Organization, name: str = "") -> IssuedCredential:
    secret = secrets.token_urlsafe(32)
    credential = ApiCredential.objects.create(
        organization=organization, name=name, secret_hash=hash_secret(secret)
    )
    return IssuedCredential(credential=credential, client_secret=secret)


def token_failure_limits(*, api_key: str, address: str) -> list[throttling.Limit]:
    return [
        throttling.Limit(f"token:client:{api_key[:100]}", settings.TOKEN_FAILURES_PER_CLIENT),
        throttling.Limit(f"token:address:{address[:100]}", settings.TOKEN_FAILURES_PER_ADDRESS),
    ]


def login_failure_limits(*, username: str, address: str) -> list[throttling.Limit]:
    """The admin's login is slowed down like the token endpoint: per username, per address."""
    return [
        throttling.Limit(f"login:user:{username.lower()[:100]}", settings.TOKEN_FAILURES_PER_CLIENT),
        throttling.Limit(f"login:address:{address[:100]}", settings.TOKEN_FAILURES_PER_ADDRESS),
    ]


def issue_access_token(*, api_key: str, client_secret: str, address: str = "") -> IssuedToken:
    """OAuth client-credentials: a random bearer token, stored hashed, expiring.

    Wrong secrets are counted per client id and per address; past the limits of the minute, every
    request of that client id or address is refused (SlowDown), a right secret included, so that
    guessing learns nothing more. Successes are not counted."""
    limits = token_failure_limits(api_key=api_key, address=address)
    wait = throttling.retry_after(limits)
    if wait is not None:
        raise SlowDown(wait)
    credential = ApiCredential.objects.filter(api_key=api_key, is_active=True).first()
    # Compare against a dummy hash when the key is unknown so timing says nothing about which part failed.
    expected = credential.secret_hash if credential else hash_secret(secrets.token_hex(8))
    if not hmac.compare_digest(expected.encode(), hash_secret(client_secret).encode()) or credential is None:
        throttling.record_failure(limits)
        raise InvalidClient
    token = secrets.token_urlsafe(32)
    lifetime = settings.API_TOKEN_TTL_SECONDS
    AccessToken.objects.create(
        credential=credential,
        token_hash=hash_secret(token),
        expires_at=timezone.now() + dt.timedelta(seconds=lifetime),
    )
    return IssuedToken(access_token=token, expires_in=lifetime)


def revoke_credential(*, credential: ApiCredential) -> None:
    """Deactivate a credential and kill every token it issued."""
    with transaction.atomic():
        credential.tokens.all().delete()
        ApiCredential.objects.filter(pk=credential.pk).update(is_active=False)
        forget_tokens()


def purge_expired_tokens() -> int:
    deleted, _ = AccessToken.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted


def purge_expired() -> dict[str, int]:
    """What the beat clears every hour: tokens past their expiry, failure counts of past minutes."""
    return {"tokens": purge_expired_tokens(), "failure_windows": throttling.purge_old_windows()}
