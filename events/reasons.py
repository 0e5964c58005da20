"""The stable reason codes of an event's status changes (EventStatusChange.code): what a program
reads in an event's timeline (events.timeline), where the free-text reason is for people.

A code never changes once published; a new cause gets a new code. Two are families with a suffix:
`typology:<rule code>` (the typology rule's own code, e.g. `typology:no_minors`) and
`providerRejected:<status>` (the server's enhanced status code, e.g. `providerRejected:5.1.1`, else
its reply code, e.g. `providerRejected:550`). The README's table is `CODES` below, in words.
"""

from __future__ import annotations

import re

CLAIMED = "claimed"
RELEASED = "released"
LEASE_EXPIRED = "leaseExpired"
SENT = "sent"
SENT_BY_EARLIER_ATTEMPT = "sentByEarlierAttempt"
QUARANTINED = "quarantined"
OPTED_OUT = "optedOut"
FATIGUE = "fatigue"
DUPLICATE = "duplicate"
TYPOLOGY = "typology"  # typology:<rule code>
NOT_PUBLISHED = "notPublished"
NO_PUBLISHED_MESSAGE = "noPublishedMessage"
UNPUBLISHED = "unpublished"
PAUSED = "paused"
RESUMED = "resumed"
EXPIRED = "expired"
EXPIRES_BEFORE_RETRY = "expiresBeforeRetry"
NO_PROFILE = "noProfile"
NO_ADDRESS = "noAddress"
ENRICHMENT_MISSING = "enrichmentMissing"
RENDER_FAILED = "renderFailed"
PROVIDER_REJECTED = "providerRejected"  # providerRejected:<status>
PROVIDER_UNAVAILABLE = "providerUnavailable"
RETRY_SCHEDULED = "retryScheduled"
RATE_LIMITED = "rateLimited"
LEASE_TOO_SHORT = "leaseTooShort"
SENSITIVE_KEY_MISSING = "sensitiveKeyMissing"

# code -> (the status it leads to, what it means). The README's "Reason codes" table says the same.
CODES: dict[str, tuple[str, str]] = {
    CLAIMED: ("processing", "a worker claimed the event for an attempt (the step names the worker)"),
    RELEASED: ("pending", "a worker's task ran out of time before it: handed back, attempt not counted"),
    LEASE_EXPIRED: ("pending", "the sweep took it back: its worker's lease ran out (crash or timeout)"),
    SENT: ("processed", "the provider accepted the message"),
    SENT_BY_EARLIER_ATTEMPT: ("processed", "an earlier attempt had sent it but died before recording it"),
    QUARANTINED: ("ignored", "the recipient's address is quarantined (an earlier hard bounce)"),
    OPTED_OUT: ("ignored", "the profile opted out of the channel or is blocklisted (typology's denylist)"),
    FATIGUE: ("ignored", "an organization fatigue rule's cap is reached for the profile"),
    DUPLICATE: ("ignored", "a typology duplicate rule: same event type, profile and ctx within its window"),
    f"{TYPOLOGY}:<rule code>": (
        "ignored",
        "a typology profile filter excluded the profile (the rule's code)",
    ),
    NOT_PUBLISHED: ("routingFailed", "the event type was not published when a worker routed it"),
    NO_PUBLISHED_MESSAGE: ("routingFailed", "the event type has no published message"),
    UNPUBLISHED: ("routingFailed", "the event type (or its message) was unpublished while the event waited"),
    PAUSED: ("paused", "the message is paused: the event waits for its resume"),
    RESUMED: ("pending", "the message was resumed: the event goes on with the version live now"),
    EXPIRED: ("tooOld", "its expiration passed before it could be sent"),
    EXPIRES_BEFORE_RETRY: ("tooOld", "a temporary failure, and it expires before the next attempt"),
    NO_PROFILE: ("targetingFailed", "no profile matches the reconciliation key"),
    NO_ADDRESS: ("targetingFailed", "the profile has no address for the channel"),
    ENRICHMENT_MISSING: ("targetingFailed", "a required enrichment (profile or resource join) found nothing"),
    RENDER_FAILED: ("deliveryFailed", "the message could not be rendered (template error, rendering bound)"),
    f"{PROVIDER_REJECTED}:<status>": (
        "deliveryFailed",
        "the provider refused for good (enhanced status code, e.g. 5.1.1, else its reply code)",
    ),
    PROVIDER_UNAVAILABLE: (
        "deliveryFailed",
        "every attempt failed temporarily (provider down or refusing for now, internal error)",
    ),
    RETRY_SCHEDULED: ("pending", "an attempt failed temporarily: the next one is scheduled"),
    RATE_LIMITED: (
        "pending",
        "no slot of the provider's rate limit before its claim ended: handed back, attempt not counted",
    ),
    LEASE_TOO_SHORT: (
        "pending",
        "less of its claim's lease was left than one send can take: handed back unsent, attempt not counted",
    ),
    SENSITIVE_KEY_MISSING: (
        "pending",
        "the worker has no key of ENCRYPTION_KEYS that opens the event's sensitive values: retried like "
        "a temporary failure (another worker may have the key); `deliveryFailed` with this code once "
        "the attempts run out",
    ),
}

_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_REPLY = re.compile(r"\b([45]\d\d)\b")
MAX_CODE_LENGTH = 80


def typology(rule_code: str) -> str:
    return f"{TYPOLOGY}:{rule_code}"[:MAX_CODE_LENGTH]


def provider_rejected(provider_response: str) -> str:
    """`providerRejected:5.1.1` from "550 5.1.1 <j***@example.com>: unknown user"; the reply (or HTTP)
    status code when the answer has no enhanced status code ("... dead: 404 UNREGISTERED" ->
    `providerRejected:404`); the family alone when it has neither."""
    found = _ENHANCED.search(provider_response) or _REPLY.search(provider_response)
    return f"{PROVIDER_REJECTED}:{found.group(1)}" if found else PROVIDER_REJECTED
