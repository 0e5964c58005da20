"""Opens and clicks of email: the rewriting of a rendered HTML part, the signed tokens of its links,
the recording of each hit, the rules that tell an automated request, and the counts reports read.

At render time (messages.services.compose) a tracked delivery draws a random `tracking_id`; the
links of its HTML part become `PUBLIC_URL/t/c/<token>` and a 1x1 GIF `PUBLIC_URL/t/o/<token>.gif`
is appended. The id and the original URLs are stored on the Delivery row, which the one recording
statement of a send inserts (events.statements): nothing is written before the send.

A token is the tracking id (and, for a click, the link's index) signed with HMAC-SHA256 under
SECRET_KEY (SECRET_KEY_FALLBACKS honoured), one salt per kind: a forged or altered token, or one of
an unknown delivery, answers 404 and records nothing. A click is redirected to the URL stored on the
delivery at render time, never to anything the request says.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import re
import secrets
import string
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from messages.models import Delivery, TrackingHit

OPEN_SALT = "messages.tracking.open"
CLICK_SALT = "messages.tracking.click"
MAX_TOKEN_LENGTH = 100  # a real token is about 65 characters
MAX_TRACKED_LINKS = 200  # distinct links per message; any beyond are left as written
MAX_URL_LENGTH = 2048  # longer links are left as written
AUTOMATED_OPEN_SECONDS = 1.0  # an open this soon after the send is a scanner's, not a reader's

# Substrings (lower case) of the User-Agent of link scanners, security gateways, link previews and
# HTTP libraries: their requests are recorded, flagged `automated`, and never counted as unique.
AUTOMATED_USER_AGENTS = (
    "bot",
    "crawl",
    "spider",
    "slurp",
    "scanner",
    "preview",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "curl/",
    "wget",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww-perl",
    "apache-httpclient",
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "safelinks",
    "symantec",
    "trendmicro",
    "forcepoint",
    "fortiguard",
    "sophos",
    "zscaler",
    "ironport",
    "facebookexternalhit",
    "whatsapp",
)
_PREFETCH_HEADERS = ("HTTP_PURPOSE", "HTTP_SEC_PURPOSE", "HTTP_X_PURPOSE", "HTTP_X_MOZ")

# The quoted href of each <a> tag.
_ANCHOR = re.compile(r"""(<a\b[^>]*?\shref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_NO_TRACK = re.compile(r"\sdata-no-track\b", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9_.:-]+")

# A transparent 1x1 GIF.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


# --- Rewriting at render time ----------------------------------------------------------------


def enabled() -> bool:
    """Tracking needs a public address for its links: without PUBLIC_URL nothing is tracked."""
    return bool(settings.PUBLIC_URL.strip())


def _base() -> str:
    return settings.PUBLIC_URL.strip().rstrip("/")


def _signer(salt: str) -> signing.Signer:
    return signing.Signer(salt=salt, algorithm="sha256", sep=".")


def open_token(tracking_id: str) -> str:
    return _signer(OPEN_SALT).sign(tracking_id)


def click_token(tracking_id: str, index: int) -> str:
    return _signer(CLICK_SALT).sign(f"{tracking_id}.{index}")


def open_url(tracking_id: str) -> str:
    return _base() + reverse("tracking-open", args=[open_token(tracking_id)])


def click_url(tracking_id: str, index: int) -> str:
    return _base() + reverse("tracking-click", args=[click_token(tracking_id, index)])


def _trackable(url: str, *, unsubscribe_url: str) -> bool:
    """Web links only: mailto:, tel:, anchors and the like, and the unsubscribe link, stay as written."""
    if not url or len(url) > MAX_URL_LENGTH or (unsubscribe_url and url == unsubscribe_url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return False
    base = _base()
    return not any(url.startswith(f"{base}/{route}/") for route in ("u", "t", "s"))


@dataclasses.dataclass(frozen=True)
class Tracked:
    html: str  # the tracked part as rewritten (HTML, or the text of an SMS)
    tracking_id: str
    links: tuple[str, ...]


def rewrite(
    html_part: str, *, opens: bool, clicks: bool, unsubscribe_url: str = "", tracking_id: str = ""
) -> Tracked | None:
    """The HTML part with its web links rewritten and the pixel appended (each as switched on), under
    a new tracking id; None when nothing is tracked (no PUBLIC_URL, both switches off, no HTML)."""
    if not enabled() or not (opens or clicks) or not html_part.strip():
        return None
    tracking_id = tracking_id or secrets.token_urlsafe(12)
    links: dict[str, int] = {}

    def replace(match: re.Match[str]) -> str:
        raw = match.group(2) if match.group(2) is not None else match.group(3)
        url = html.unescape(raw).strip()
        if _NO_TRACK.search(match.group(0)) or not _trackable(url, unsubscribe_url=unsubscribe_url):
            return match.group(0)
        index = links.get(url)
        if index is None:
            if len(links) >= MAX_TRACKED_LINKS:
                return match.group(0)
            index = links[url] = len(links)
        return f'{match.group(1)}"{click_url(tracking_id, index)}"'

    rewritten = _ANCHOR.sub(replace, html_part) if clicks else html_part
    if opens:
        pixel = (
            f'<img src="{open_url(tracking_id)}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0">'
        )
        ends = list(_BODY_END.finditer(rewritten))
        if ends:
            at = ends[-1].start()
            rewritten = rewritten[:at] + pixel + rewritten[at:]
        else:
            rewritten += pixel
    return Tracked(html=rewritten, tracking_id=tracking_id, links=tuple(links))


# --- Short links of text parts (SMS) ---------------------------------------------------------

SHORT_SALT = "messages.tracking.short"
SHORT_ID_LENGTH = 10  # letters and digits: about 59 random bits
SHORT_SIGNATURE_LENGTH = 11  # base64url characters of the HMAC-SHA256: 66 bits
_ALPHANUMERIC = string.ascii_letters + string.digits
_TEXT_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""


def _short_signature(value: str, key: str | bytes) -> str:
    digest = salted_hmac(SHORT_SALT, value, secret=key, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).decode()[:SHORT_SIGNATURE_LENGTH]


def short_code(tracking_id: str, index: int) -> str:
    """`<id>.<index>.<signature>`: about 25 characters, where an SMS counts each one."""
    value = f"{tracking_id}.{index}"
    return f"{value}.{_short_signature(value, settings.SECRET_KEY)}"


def short_url(tracking_id: str, index: int) -> str:
    return _base() + reverse("tracking-short", args=[short_code(tracking_id, index)])


def rewrite_text(
    text: str, *, clicks: bool, unsubscribe_url: str = "", tracking_id: str = ""
) -> Tracked | None:
    """A text part with its web links replaced by short signed links; None when nothing is tracked."""
    if not enabled() or not clicks or not text.strip():
        return None
    tracking_id = tracking_id or "".join(secrets.choice(_ALPHANUMERIC) for _ in range(SHORT_ID_LENGTH))
    links: dict[str, int] = {}

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        url = found.rstrip(_TRAILING)
        tail = found[len(url) :]
        if not _trackable(url, unsubscribe_url=unsubscribe_url):
            return found
        index = links.get(url)
        if index is None:
            if len(links) >= MAX_TRACKED_LINKS:
                return found
            index = links[url] = len(links)
        return short_url(tracking_id, index) + tail

    rewritten = _TEXT_URL.sub(replace, text)
    if not links:
        return None
    return Tracked(html=rewritten, tracking_id=tracking_id, links=tuple(links))


def delivery_for_short_link(code: str) -> tuple[Delivery, int] | None:
    """The delivery and link index of a short link; None for a forged, altered or unknown one. A
    phone that takes the full stop ending a sentence into the link is forgiven (no code ends in one)."""
    code = code.rstrip(".")
    if len(code) > 40 or not _TOKEN_CHARACTERS.fullmatch(code):
        return None
    value, _, signature = code.rpartition(".")
    tracking_id, _, index = value.partition(".")
    if not (tracking_id and index.isascii() and index.isdigit() and len(index) <= 4 and signature):
        return None
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    if not any(constant_time_compare(signature, _short_signature(value, key)) for key in keys):
        return None
    delivery = _delivery(tracking_id)
    if delivery is None or int(index) >= len(delivery.tracked_links or []):
        return None
    return delivery, int(index)


# --- Reading a token -------------------------------------------------------------------------


def _unsigned(token: str, salt: str) -> str | None:
    if len(token) > MAX_TOKEN_LENGTH or not _TOKEN_CHARACTERS.fullmatch(token):
        return None
    try:
        return _signer(salt).unsign(token)
    except signing.BadSignature:
        return None


def _delivery(tracking_id: str) -> Delivery | None:
    # The unique index on tracking_id is partial (tracked deliveries only): its condition repeated
    # here lets SQLite use it too.
    return Delivery.objects.filter(~Q(tracking_id=""), tracking_id=tracking_id).first()


def delivery_for_open(token: str) -> Delivery | None:
    """The delivery an open token was made for; None for a forged, altered or unknown one."""
    tracking_id = _unsigned(token, OPEN_SALT)
    if not tracking_id:
        return None
    return _delivery(tracking_id)


def delivery_for_click(token: str) -> tuple[Delivery, int] | None:
    """The delivery and link index a click token was made for; None for a forged, altered or unknown one."""
    value = _unsigned(token, CLICK_SALT)
    if not value:
        return None
    tracking_id, _, index = value.rpartition(".")
    if not (tracking_id and index.isascii() and index.isdigit() and len(index) <= 4):
        return None
    delivery = _delivery(tracking_id)
    if delivery is None or int(index) >= len(delivery.tracked_links or []):
        return None
    return delivery, int(index)


# --- Recording a hit -------------------------------------------------------------------------


def automated_reason(request: HttpRequest, *, kind: str, delivery: Delivery, now: dt.datetime) -> str:
    """Why a request is obviously not a reader's ("" if it may be one): see the README's Tracking."""
    if request.method == "HEAD":
        return "HEAD request"
    for header in _PREFETCH_HEADERS:
        if "prefetch" in request.META.get(header, "").lower():
            return "prefetch"
    agent = request.META.get("HTTP_USER_AGENT", "").strip().lower()
    if not agent:
        return "no user agent"
    for marker in AUTOMATED_USER_AGENTS:
        if marker in agent:
            return f"user agent: {marker}"[:40]
    if kind == TrackingHit.Kind.OPEN and (now - delivery.created_at).total_seconds() < AUTOMATED_OPEN_SECONDS:
        return "open within 1 s of the send"
    return ""


def record_hit(
    *, request: HttpRequest, delivery: Delivery, kind: str, link_index: int | None = None
) -> TrackingHit:
    """One row per open or click; the first human one of its kind for the delivery is flagged
    `first` (one such row at most, the database's unique constraint deciding between racing hits)."""
    now = timezone.now()
    reason = automated_reason(request, kind=kind, delivery=delivery, now=now)
    hit = TrackingHit(
        organization_id=delivery.organization_id,
        delivery=delivery,
        message_id=delivery.message_id,
        version_id=delivery.version_id,
        kind=kind,
        link_index=link_index,
        url=delivery.tracked_links[link_index][:MAX_URL_LENGTH] if link_index is not None else "",
        automated=bool(reason),
        automated_reason=reason,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:400],
        created_at=now,
    )
    if not reason and not TrackingHit.objects.filter(delivery=delivery, kind=kind, first=True).exists():
        hit.first = True
        try:
            with transaction.atomic():
                hit.save(force_insert=True)
            return hit
        except IntegrityError:  # another request was first meanwhile
            hit.pk, hit.first = None, False
    hit.save(force_insert=True)
    return hit


# --- Counts for reports ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Counts:
    """Opens and clicks: every hit, the unique ones (first human hit of a delivery), the automated."""

    opens: int = 0
    unique_opens: int = 0
    automated_opens: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    automated_clicks: int = 0


def _aggregates() -> dict[str, Count]:
    opens, clicks = Q(kind=TrackingHit.Kind.OPEN), Q(kind=TrackingHit.Kind.CLICK)
    return {
        "opens": Count("pk", filter=opens),
        "unique_opens": Count("pk", filter=opens & Q(first=True)),
        "automated_opens": Count("pk", filter=opens & Q(automated=True)),
        "clicks": Count("pk", filter=clicks),
        "unique_clicks": Count("pk", filter=clicks & Q(first=True)),
        "automated_clicks": Count("pk", filter=clicks & Q(automated=True)),
    }


def _hits(version_ids: Iterable[int], since: dt.datetime | None, until: dt.datetime | None):
    hits = TrackingHit.objects.filter(version_id__in=list(version_ids))
    if since is not None:
        hits = hits.filter(created_at__gte=since)
    if until is not None:
        hits = hits.filter(created_at__lt=until)
    return hits


def counts(
    *, version_ids: Iterable[int], since: dt.datetime | None = None, until: dt.datetime | None = None
) -> Counts:
    """Opens and clicks of these message versions with since <= time < until. A unique open is a
    delivery's first human open, counted in the period it happened: periods add up."""
    return Counts(**_hits(version_ids, since, until).aggregate(**_aggregates()))


def hourly_counts(
    *, version_ids: Iterable[int], since: dt.datetime | None = None, until: dt.datetime | None = None
) -> dict[tuple[int, dt.datetime], Counts]:
    """counts() by (version id, hour): what an hourly rollup of the hits stores."""
    rows = (
        _hits(version_ids, since, until)
        .annotate(hour=TruncHour("created_at", tzinfo=dt.UTC))
        .values("version_id", "hour")
        .annotate(**_aggregates())
        .order_by("version_id", "hour")
    )
    return {
        (row.pop("version_id"), row.pop("hour")): Counts(**row)  # type: ignore[misc]
        for row in rows
    }


@dataclasses.dataclass(frozen=True)
class LinkClicks:
    url: str
    clicks: int  # every click, automated ones included
    unique_clicks: int  # deliveries with a human click on this link


def link_clicks(
    *,
    version_ids: Iterable[int],
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
) -> list[LinkClicks]:
    """The links of these versions ranked by human clicks ("hot clicks")."""
    rows = (
        _hits(version_ids, since, until)
        .filter(kind=TrackingHit.Kind.CLICK)
        .values("url")
        .annotate(
            clicks=Count("pk"),
            unique_clicks=Count("delivery", filter=Q(automated=False), distinct=True),
        )
        .order_by("-unique_clicks", "-clicks", "url")[: max(1, min(limit, 1000))]
    )
    return [LinkClicks(**row) for row in rows]
