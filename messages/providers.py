"""Several providers per channel, in order, with failover and a rate limit per provider.

A channel's `<CHANNEL>_PROVIDERS` setting (e.g. EMAIL_PROVIDERS) lists named providers, each with
its backend and options and an optional rate limit (messages per second). Unset or empty, the
channel sends through its single backend as before.

* Failover: a provider whose sends fail for the provider's own reason (`SendResult.provider_fault`:
  a refused or dropped connection, a timeout, an authentication error, a 5xx that is not about the
  recipient) PROVIDER_FAILURES_BEFORE_COOLDOWN times in a row is set aside for
  PROVIDER_COOLDOWN_SECONDS; while it is, the next provider in the list is used. A send that meets
  such a fault is tried at once on the next usable provider; every attempt is recorded on the
  delivery (`SendResult.attempts`: provider, outcome, answer) and the delivery names the provider
  that answered last. When every provider is set aside, the first one is tried anyway (a cool-down
  is a preference, not an outage of the channel).
* The claim's lease: before every attempt, the first included, a provider is tried only if the
  longest one of its sends can take (its backend's `max_send_seconds`, from its timeouts) ends
  before the claim does (`send_deadline`: the lease's end); a provider that does not fit is passed
  over. When none was tried, nothing is sent (`SendResult.lease_too_short`: the event is tried again
  at once with a new lease, the attempt not counted); after a fault, the fault stands (retried
  later). A chain of slow providers never outlives the lease, so the worker that takes the event
  over after it never sends it a second time.
* An unknown outcome (`SendResult.outcome_unknown`: the request was written and its answer lost, a
  read timeout, no submit_sm_resp, a connection lost after SMTP's DATA) is never sent at once
  through the next provider: the provider may have taken the message. It counts toward the
  provider's cool-down and the event is retried later, through the providers' order again. That
  retry may duplicate the message, as any at-least-once sender's may; an immediate failover would
  double that risk.
* Rate limit: at most `rate_limit` sends start in any window of one second, across every process
  and machine sharing the Redis server (a sliding log in a Lua script, Redis's own clock). A send
  over the limit waits for a slot as long as the send still fits in its claim afterwards: one that
  would wait longer is handed back unsent (retried when a slot should be free), never a send after
  the lease.

The shared state (failure counts, cool-downs, rate windows) lives in the Redis server of
PROVIDERS_REDIS_URL (default: REDIS_URL, else the Celery broker if it is Redis). Without Redis
it is kept per process, which is right only for a single worker process (development): each
process would allow the whole rate on its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from messages.channels import (
    Channel,
    ChannelBackend,
    Recipient,
    RenderedMessage,
    SendResult,
    max_send_seconds,
    send_budget,
    waits_on_network,
)

logger = logging.getLogger(__name__)

TEMPORARY = "temporaryFailure"
KEY_PREFIX = "transactional:provider"

# The end of the claim's lease, in time.monotonic() (events.pipeline sets it around each send): a
# send starts only if it ends before (`fits`). None: no claim (a proof), no bound.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("send_deadline", default=None)


@contextlib.contextmanager
def send_deadline(claim_end: float | None) -> Iterator[None]:
    token = _deadline.set(claim_end)
    try:
        yield
    finally:
        _deadline.reset(token)


def bounded(seconds: float) -> float:
    """A send's bound, at most the send budget: a backend whose timeouts allow more than the lease
    could ever hold (`manage.py check` warns of it) still sends, within what any claim leaves."""
    return min(seconds, send_budget())


def latest_start(seconds: float) -> float | None:
    """The latest time (time.monotonic()) a send of this bound may start within the claim."""
    end = _deadline.get()
    return None if end is None else end - bounded(seconds)


def fits(seconds: float) -> bool:
    """Whether a send of this bound, started now, ends before the claim does."""
    latest = latest_start(seconds)
    return latest is None or time.monotonic() <= latest


def too_short(name: str, seconds: float) -> SendResult:
    """Nothing sent: a send of this bound would outlive the claim (tried again with a new lease)."""
    end = _deadline.get()
    left = max((end or 0.0) - time.monotonic(), 0.0)
    return SendResult(
        TEMPORARY,
        provider_response=(
            f"{name}: one send may take up to {bounded(seconds):.0f} s, more than the {left:.0f} s "
            "left of the claim's lease"
        ),
        retry_after=1.0,
        lease_too_short=True,
    )


@dataclass(frozen=True)
class Provider:
    name: str
    backend: ChannelBackend
    rate_limit: float = 0.0  # messages per second; 0: no limit
    # Its key in the shared state (default: its name); an organization's provider has its row's
    # (messages.org_providers), so two organizations' providers of one name are two limits.
    key: str = ""


# --- the shared state ---------------------------------------------------------------------------

# A sliding log of the sends of the last second: a slot is taken only if fewer than `limit` sends
# started in the window; else the answer is how long until the oldest leaves it (milliseconds).
_TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return wait
"""

# A failure of the provider: counted; at the threshold the provider is set aside (a key that
# expires after the cool-down) and the count starts again.
_FAILED = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class RedisState:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._take = self.client.register_script(_TAKE_SLOT)
        self._failed = self.client.register_script(_FAILED)
        self._token = 0
        self._lock = threading.Lock()

    def take_slot(self, key: str, limit: int, window_us: int) -> float:
        """0 if a slot was taken; else the seconds until one may be free."""
        with self._lock:
            self._token += 1
            token = f"{id(self)}:{threading.get_ident()}:{self._token}"
        waited = int(self._take(keys=[f"{KEY_PREFIX}:rate:{key}"], args=[limit, window_us, token]))
        return waited / 1_000_000

    def failed(self, key: str, threshold: int, cooldown_ms: int) -> bool:
        keys = [f"{KEY_PREFIX}:failures:{key}", f"{KEY_PREFIX}:down:{key}"]
        return bool(self._failed(keys=keys, args=[threshold, cooldown_ms]))

    def succeeded(self, key: str) -> None:
        self.client.delete(f"{KEY_PREFIX}:failures:{key}")

    def set_aside(self, key: str) -> bool:
        return bool(self.client.exists(f"{KEY_PREFIX}:down:{key}"))


class LocalState:
    """The same state in this process's memory (no Redis configured)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, deque[float]] = {}
        self._failures: dict[str, int] = {}
        self._down_until: dict[str, float] = {}

    def take_slot(self, key: str, limit: int, window_us: int) -> float:
        window = window_us / 1_000_000
        with self._lock:
            now = time.monotonic()
            log = self._logs.setdefault(key, deque())
            while log and log[0] <= now - window:
                log.popleft()
            if len(log) < limit:
                log.append(now)
                return 0.0
            return max(log[0] + window - now, 0.000001)

    def failed(self, key: str, threshold: int, cooldown_ms: int) -> bool:
        with self._lock:
            count = self._failures.get(key, 0) + 1
            if count >= threshold:
                self._failures.pop(key, None)
                self._down_until[key] = time.monotonic() + cooldown_ms / 1000
                return True
            self._failures[key] = count
            return False

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def set_aside(self, key: str) -> bool:
        with self._lock:
            return self._down_until.get(key, 0.0) > time.monotonic()


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def redis_url() -> str:
    """PROVIDERS_REDIS_URL (or REDIS_URL), else the Celery broker's or the cache's if Redis."""
    url = str(getattr(settings, "PROVIDERS_REDIS_URL", "") or "")
    if url:
        return url
    broker = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    if broker.startswith(_REDIS_SCHEMES):
        return broker
    location = getattr(settings, "CACHES", {}).get("default", {}).get("LOCATION", "")
    location = location[0] if isinstance(location, list | tuple) and location else location
    return location if isinstance(location, str) and location.startswith(_REDIS_SCHEMES) else ""


_states: dict[str, RedisState | LocalState] = {}
_states_lock = threading.Lock()


def state() -> RedisState | LocalState:
    """The shared state of this process (one Redis client per URL, or the in-memory one)."""
    url = redis_url()
    with _states_lock:
        found = _states.get(url)
        if found is None:
            found = _states[url] = RedisState(url) if url else LocalState()
        return found


def forget_state() -> None:
    """Drop this process's clients and in-memory state (tests: each starts from none)."""
    with _states_lock:
        _states.clear()


# --- the rate limit ----------------------------------------------------------------------------

WINDOW_SECONDS = 1.0


def wait_for_slot(
    key: str,
    rate_limit: float,
    *,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Block until a slot of `key`'s rate is taken (True), or False if none comes before the
    deadline (time.monotonic()). A rate below one per second is one send per 1/rate seconds."""
    if rate_limit <= 0:
        return True
    limit, window = (int(rate_limit), WINDOW_SECONDS) if rate_limit >= 1 else (1, 1 / rate_limit)
    shared = state()
    while True:
        wait = shared.take_slot(key, limit, int(window * 1_000_000))
        if wait <= 0:
            return True
        if deadline is not None and time.monotonic() + wait > deadline:
            return False
        sleep(wait)


# --- the failover backend ----------------------------------------------------------------------


class FailoverBackend:
    """Sends through the first usable provider of a list (see the module's docstring)."""

    def __init__(self, channel: str, providers: Sequence[Provider]) -> None:
        if not providers:
            raise ValueError(f"{channel}: a list of providers needs at least one")
        self.channel = channel
        self.providers = list(providers)

    @property
    def waits_on_network(self) -> bool:
        return any(waits_on_network(p.backend) for p in self.providers)

    @property
    def max_send_seconds(self) -> float:
        """The longest one provider's send can take (one attempt at a time fits the claim)."""
        return max(max_send_seconds(p.backend) for p in self.providers)

    def key(self, provider: Provider) -> str:
        return f"{self.channel}:{provider.key or provider.name}"

    def order(self) -> list[Provider]:
        """The providers to try, in order: those not set aside, then (if none is) the first."""
        shared = state()
        usable = [p for p in self.providers if not shared.set_aside(self.key(p))]
        return usable or self.providers[:1]

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        threshold = max(int(settings.PROVIDER_FAILURES_BEFORE_COOLDOWN), 1)
        cooldown_ms = max(int(float(settings.PROVIDER_COOLDOWN_SECONDS) * 1000), 1)
        shared = state()
        attempts: list[dict[str, Any]] = []
        result: SendResult | None = None
        try:
            order = self.order()
        except Exception:  # the shared state unreachable: the providers in their order
            logger.warning("%s: the providers' shared state is unreachable", self.channel, exc_info=True)
            order = self.providers
        for provider in order:
            bound = max_send_seconds(provider.backend)
            if not fits(bound):
                # Its send could outlive the claim's lease (and be made again by the worker that
                # takes the event over): not tried now. Nor is the next one in its place: the
                # preferred provider (its sender, its cost) waits for a new lease; after a fault,
                # the fault stands.
                if result is None:
                    result = too_short(provider.name, bound)
                    attempts.append(_attempt(provider, result))
                break
            key = self.key(provider)
            try:
                slot = wait_for_slot(key, provider.rate_limit, deadline=latest_start(bound))
            except Exception as error:  # no slot can be counted: never send beyond the limit
                logger.warning("%s: the rate limit's store is unreachable", key, exc_info=True)
                result = SendResult(
                    TEMPORARY,
                    provider_response=f"{provider.name}: the rate limit's store is unreachable: {error}"[
                        :500
                    ],
                )
                attempts.append(_attempt(provider, result))
                break
            if not slot:
                result = SendResult(
                    TEMPORARY,
                    provider_response=f"{provider.name}: no slot of its rate limit before the claim ends",
                    retry_after=max(1.0, 1 / provider.rate_limit),
                    rate_limited=True,
                )
                attempts.append(_attempt(provider, result))
                break
            result = provider.backend.send(rendered, recipient)
            attempts.append(_attempt(provider, result))
            try:
                if not result.provider_fault:
                    if result.sent or result.outcome != TEMPORARY:
                        shared.succeeded(key)
                    break
                shared.failed(key, threshold, cooldown_ms)
            except Exception:  # the count is lost; the send's outcome is not
                logger.warning("%s: the providers' shared state is unreachable", key, exc_info=True)
                if not result.provider_fault:
                    break
            if result.outcome_unknown:
                # The provider may have taken the message: the next one would be a second copy now.
                break
        assert result is not None
        return replace(result, provider=attempts[-1]["provider"], attempts=tuple(attempts))


def _attempt(provider: Provider, result: SendResult) -> dict[str, Any]:
    return {"provider": provider.name, "outcome": result.outcome, "response": result.provider_response[:500]}


ENTRY_KEYS = ("name", "backend", "options", "rate_limit")


def configured(channel: str) -> list[dict[str, Any]]:
    """The channel's list of providers from its setting (`<CHANNEL>_PROVIDERS`), its shape checked
    (ValueError naming the setting and the provider); `build` checks each backend and its options."""
    setting = f"{channel.upper()}_PROVIDERS"
    entries = getattr(settings, setting, None) or []
    if not isinstance(entries, list | tuple):
        raise ValueError(f"{setting}: must be a list of providers (a JSON array)")
    names: set[str] = set()
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or len(name) > 64:
            raise ValueError(f"{setting}: each provider needs a name (1 to 64 characters)")
        if name in names:
            raise ValueError(f"{setting}: the name '{name}' is used twice")
        names.add(name)
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:  # a misspelt rate_limit would silently mean no limit
            raise ValueError(
                f"{setting}: '{name}': unknown key {', '.join(repr(k) for k in unknown)} "
                f"(a provider has {', '.join(ENTRY_KEYS)})"
            )
        rate = entry.get("rate_limit", 0) or 0
        if not isinstance(rate, int | float) or isinstance(rate, bool) or rate < 0 or rate > 100_000:
            raise ValueError(f"{setting}: '{name}': rate_limit must be 0 to 100000 per second")
        if not isinstance(entry.get("backend") or "", str):
            raise ValueError(f"{setting}: '{name}': backend must be a dotted path (a string)")
        if not isinstance(entry.get("options") or {}, dict):
            raise ValueError(f"{setting}: '{name}': options must be an object (keyword arguments)")
    return list(entries)


def build(channel: Channel, entry: dict[str, Any]) -> ChannelBackend:
    """One provider's backend, built with its options; ImproperlyConfigured naming the setting and
    the provider for a backend path that is no class, an option the backend does not take or a
    wrong value (`manage.py check` reports it: messages.checks), never a TypeError in a worker."""
    where = f"{channel.name.upper()}_PROVIDERS: '{entry.get('name')}'"
    path = entry.get("backend") or ""
    try:
        return channel.provider_backend(path, dict(entry.get("options") or {}))
    except ImportError as error:
        raise ImproperlyConfigured(f"{where}: the backend '{path}' cannot be imported: {error}") from None
    except (ImproperlyConfigured, TypeError, ValueError) as error:
        raise ImproperlyConfigured(f"{where}: {error}") from None
