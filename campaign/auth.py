"""API authentication: `Authorization: Bearer <token>` plus `X-Api-Key`, both required and both of
the same credential. The token's hash is looked up once and cached briefly in the process (a dict:
authentication costs neither a query nor a cache server's round trip on the hot path); every
comparison of a secret is constant-time. A revocation reaches every process within a second: the
entries carry the `auth` generation (campaign.generations), which a revocation bumps."""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, NotFound
from rest_framework.throttling import SimpleRateThrottle

from campaign import generations
from campaign.models import AccessToken, ApiCredential, hash_secret

UNKNOWN_TOKEN_SECONDS = 5  # how long an unknown token is remembered as unknown (no query per retry)


@dataclass(frozen=True)
class ApiCaller:
    """Who is calling: a credential of one organization. Stands in for `request.user` on the API."""

    credential_id: int
    api_key: str
    organization_id: int
    organization_slug: str
    token_expires_at: dt.datetime

    is_authenticated = True
    is_anonymous = False


_callers = generations.ProcessCache(generations.AUTH)


def caller_for_token(token: str) -> ApiCaller | None:
    token_hash = hash_secret(token)
    generation = _callers.generation()  # before the read: a revocation meanwhile makes it stale
    cached = _callers.get(token_hash, generation)
    if cached is generations.ABSENT:
        row = (
            AccessToken.objects.filter(token_hash=token_hash, credential__is_active=True)
            .select_related("credential__organization")
            .first()
        )
        if row is None:
            _callers.put(token_hash, None, generation=generation, seconds=UNKNOWN_TOKEN_SECONDS)
            return None
        cached = ApiCaller(
            credential_id=row.credential_id,
            api_key=row.credential.api_key,
            organization_id=row.credential.organization_id,
            organization_slug=row.credential.organization.slug,
            token_expires_at=row.expires_at,
        )
        remaining = (row.expires_at - timezone.now()).total_seconds()
        if remaining > 0:
            seconds = min(settings.AUTH_CACHE_SECONDS, remaining)
            _callers.put(token_hash, cached, generation=generation, seconds=seconds)
    if cached is None or cached.token_expires_at <= timezone.now():
        return None
    return cached


def forget_tokens() -> None:
    """Every process stops trusting its cached callers within GENERATION_CHECK_SECONDS of the commit
    (revocation, a deleted token), rather than when the cache expires; this process at once."""
    generations.bump(generations.AUTH)
    generations.forget_checks()  # this connection sees the bump at once
    transaction.on_commit(generations.forget_checks)  # and the others' once it commits


NOT_FOUND = "No such event type for this organization, or it is not published."


def _key_of_another_organization(api_key: str, organization_id: int) -> bool:
    return (
        ApiCredential.objects.filter(api_key=api_key, is_active=True)
        .exclude(organization_id=organization_id)
        .exists()
    )


class CampaignTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        api_key = request.META.get("HTTP_X_API_KEY", "")
        if not header and not api_key:
            raise NotAuthenticated("Authorization: Bearer <token> and X-Api-Key headers are required.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("The Authorization header must be 'Bearer <access token>'.")
        if not api_key:
            raise AuthenticationFailed("The X-Api-Key header is required.")
        caller = caller_for_token(token.strip())
        if caller is not None and not hmac.compare_digest(caller.api_key.encode(), api_key.encode()):
            if _key_of_another_organization(api_key, caller.organization_id):
                # Credentials of two organizations mixed: answered like a URL of another organization.
                raise NotFound(NOT_FOUND)
            caller = None
        if caller is None:
            raise AuthenticationFailed(
                "Invalid or expired access token, or an API key that does not match it."
            )
        return caller, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="campaign"'


class CredentialRateThrottle(SimpleRateThrottle):
    """Requests per credential (API_RATE_LIMIT, e.g. `6000/min`; none when unset); 429 with Retry-After."""

    scope = "credential"

    @classmethod
    def is_configured(cls) -> bool:
        """Whether a limit is set: without one (the default), views need not make a throttle per request."""
        return bool(cls.THROTTLE_RATES.get(cls.scope))

    def get_cache_key(self, request, view):
        caller = getattr(request, "user", None)
        if not isinstance(caller, ApiCaller):
            return None
        return self.cache_format % {"scope": self.scope, "ident": caller.credential_id}
