"""Try a draft on real traffic: the draft (and the live version, if any) rendered against the last N
events of its configuration, in the bounded renderer, each event classified: renders, uses a
missing field, fails to render, goes beyond a bound of rendering.

Nothing is sent and nothing is stored but the try's result: a DraftTry row, stored pending when the
marketer asks, filled by a worker (`messages.run_draft_try`; inline when Celery runs eagerly),
kept a day (`expires_at`) and purged with the history (events.retention). The events come through
the event side (`lifecycle.event_side().recent_events`), their data as displayed
(events.selectors.ctx_for_display): messages never imports events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

from django.conf import settings
from django.utils import timezone
from jinja2.exceptions import UndefinedError

from messages import lifecycle, services
from messages.channels import channel as channel_of
from messages.models import DraftTry, TransactionalMessage
from messages.rendering import TemplateError, failing_template, recording_missing, validate_content

logger = logging.getLogger(__name__)

MIN_EVENTS, MAX_EVENTS, DEFAULT_EVENTS = 1, 200, 50
KEPT_FOR = dt.timedelta(days=1)
SHOWN_OUTPUTS = 3  # the first outputs shown per side
SHOWN_CHARACTERS = 4_000  # of each part of an output shown
REASON_CHARACTERS = 300
PROGRESS_EVERY = 20  # events between two progress updates of the row


class Kind:
    RENDERED = "rendered"
    MISSING_FIELD = "missingField"
    RENDER_ERROR = "renderError"
    EXCEEDED_BOUND = "exceededBound"
    NOT_TRIED = "notTried"  # the try's time budget ran out first


KIND_LABELS = {
    Kind.RENDERED: "Renders",
    Kind.MISSING_FIELD: "Missing field",
    Kind.RENDER_ERROR: "Render error",
    Kind.EXCEEDED_BOUND: "Exceeded a bound",
    Kind.NOT_TRIED: "Not tried (time budget)",
}
FAILURES = (Kind.MISSING_FIELD, Kind.RENDER_ERROR, Kind.EXCEEDED_BOUND)


class TryRefused(Exception):
    """A try that cannot be asked as given (`field` names the input)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_EVENTS <= size <= MAX_EVENTS:
        raise TryRefused("size", f"a number of events from {MIN_EVENTS} to {MAX_EVENTS}")
    return size


def start(*, message: TransactionalMessage, size: int, user: Any = None) -> DraftTry:
    """Store the try pending (the draft as it stands, the live version's number) and hand it to a
    worker; eagerly (tests, CELERY_TASK_ALWAYS_EAGER) it runs here, before this returns."""
    size = check_size(size)
    live = message.published_version
    now = timezone.now()
    attempt = DraftTry.objects.create(
        organization_id=message.configuration.organization_id,
        message=message,
        requested_by=user if getattr(user, "pk", None) else None,
        size=size,
        draft_content=message.draft_content(),
        live_number=live.number if live is not None else None,
        created_at=now,
        expires_at=now + KEPT_FOR,
    )
    enqueue(attempt.pk)
    attempt.refresh_from_db()
    return attempt


def enqueue(try_id: int) -> None:
    from messages.tasks import run_draft_try

    if settings.CELERY_TASK_ALWAYS_EAGER:
        run(try_id)
        return
    try:
        run_draft_try.apply_async(args=[try_id])
    except Exception:  # the broker is unreachable: say so on the page rather than wait forever
        logger.warning("could not enqueue the draft try %s", try_id, exc_info=True)
        DraftTry.objects.filter(pk=try_id, status=DraftTry.Status.PENDING).update(
            status=DraftTry.Status.FAILED,
            finished_at=timezone.now(),
            result={"error": "The worker could not be reached: try again in a moment."},
        )


@dataclasses.dataclass(frozen=True)
class _TriedEvent:
    """A real event as compose reads it (EventLike): its PKey and arrival for `event.*`."""

    configuration: Any
    ctx: dict[str, Any]
    pkey: str
    created_at: dt.datetime | None
    pk: str = "tried"  # truthy: the template's `event.PKey` is the real one (nothing is tracked)


@dataclasses.dataclass(frozen=True)
class Outcome:
    kind: str
    reason: str = ""
    parts: dict[str, str] | None = None


def render_one(*, content: dict[str, Any], configuration: Any, event: lifecycle.RealEvent) -> Outcome:
    """One event rendered with one content through the bounded renderer, classified."""
    tried = _TriedEvent(
        configuration=configuration, ctx=event.ctx, pkey=event.pkey, created_at=event.created_at
    )
    with recording_missing() as missing:
        try:
            rendered = services.compose(
                version=None,
                event=tried,
                profile=event.profile,
                content=content,
                ctx=event.ctx,
                joined_profile=event.joined_profile,
                language=event.language or None,
            )
        except TemplateError as error:  # a compiled template raises it only beyond a bound
            return Outcome(Kind.EXCEEDED_BOUND, _short(str(error)))
        except UndefinedError as error:  # `ctx.coupon.code` with no coupon
            part, line = failing_template(error)
            return Outcome(Kind.MISSING_FIELD, _short(_where(part, line) + str(error)))
        except Exception as error:
            if error.__class__.__name__ == "SoftTimeLimitExceeded":
                raise
            part, line = failing_template(error)
            reason = f"{_where(part, line)}{error.__class__.__name__}: {error}"
            return Outcome(Kind.RENDER_ERROR, _short(reason))
    if missing:
        names = ", ".join(missing)
        return Outcome(Kind.MISSING_FIELD, _short(f"uses {names}, which this event lacks (rendered empty)"))
    return Outcome(Kind.RENDERED, parts={k: str(v)[:SHOWN_CHARACTERS] for k, v in rendered.parts.items()})


def _where(part: str, line: int | None) -> str:
    return (part + (f", line {line}" if line else "") + ": ") if part else ""


def _short(text: str) -> str:
    return text if len(text) <= REASON_CHARACTERS else text[: REASON_CHARACTERS - 1] + "…"


def _compile_problem(content: dict[str, Any], keys: tuple[str, ...]) -> str:
    try:
        validate_content(content, vocabulary=None, keys=keys)
    except TemplateError as error:
        return str(error)
    return ""


def _side(name: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "counts": {}, "outputs": [], "problem": ""}


def run(try_id: int) -> None:
    """Fill a pending try (the worker's task): render each of the last N events with the draft and
    the live version, within the try's overall budget (DRAFT_TRY_BUDGET_SECONDS): the events not
    reached by then are counted `notTried`."""
    claimed = DraftTry.objects.filter(pk=try_id, status=DraftTry.Status.PENDING).update(
        status=DraftTry.Status.RUNNING
    )
    if not claimed:
        return
    attempt = DraftTry.objects.select_related("message__configuration__organization").get(pk=try_id)
    try:
        result = _try(attempt)
    except Exception as error:
        if error.__class__.__name__ == "SoftTimeLimitExceeded":
            result = {"error": "The try ran out of time."}
        else:
            logger.exception("draft try %s failed", try_id)
            result = {"error": f"The try failed: {error.__class__.__name__}"}
        DraftTry.objects.filter(pk=try_id).update(
            status=DraftTry.Status.FAILED, result=result, finished_at=timezone.now()
        )
        return
    DraftTry.objects.filter(pk=try_id).update(
        status=DraftTry.Status.DONE, result=result, finished_at=timezone.now()
    )


def _try(attempt: DraftTry) -> dict[str, Any]:
    message = attempt.message
    configuration = message.configuration
    keys = channel_of(message.channel).content_keys
    started = time.monotonic()
    budget = float(settings.DRAFT_TRY_BUDGET_SECONDS)
    contents: list[tuple[dict[str, Any], dict[str, Any]]] = []
    draft = _side("draft", "Draft")
    contents.append((draft, attempt.draft_content))
    live_version = (
        message.versions.filter(number=attempt.live_number).first() if attempt.live_number else None
    )
    if live_version is not None:
        live = _side("live", f"Live version (v{live_version.number})")
        contents.append((live, live_version.content))
    for side, content in contents:
        side["problem"] = _compile_problem(content, keys)
    events = lifecycle.event_side().recent_events(message, attempt.size)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for index, event in enumerate(events):
        if index and index % PROGRESS_EVERY == 0:
            DraftTry.objects.filter(pk=attempt.pk).update(
                result={"progress": {"done": index, "of": len(events)}}
            )
        if event.skipped:
            skipped.append({"pkey": event.pkey, "reason": _short(event.skipped)})
            continue
        out_of_time = time.monotonic() - started > budget
        row: dict[str, Any] = {"pkey": event.pkey, "sides": []}
        failed = False
        for side, content in contents:
            if side["problem"]:
                outcome = Outcome(Kind.RENDER_ERROR, side["problem"])
            elif out_of_time:
                outcome = Outcome(Kind.NOT_TRIED, f"the try's time budget of {budget:g} s ran out")
            else:
                outcome = render_one(content=content, configuration=configuration, event=event)
            side["counts"][outcome.kind] = side["counts"].get(outcome.kind, 0) + 1
            if outcome.parts is not None and len(side["outputs"]) < SHOWN_OUTPUTS:
                side["outputs"].append({"pkey": event.pkey, "parts": list(outcome.parts.items())})
            failed = failed or outcome.kind != Kind.RENDERED
            label = KIND_LABELS[outcome.kind]
            row["sides"].append({"kind": outcome.kind, "label": label, "reason": outcome.reason})
        if failed:
            rows.append(row)
    for side, _ in contents:
        side["rendered"] = side["counts"].get(Kind.RENDERED, 0)
        side["failed"] = sum(side["counts"].get(kind, 0) for kind in FAILURES)
        side["summary"] = [
            {"kind": kind, "label": KIND_LABELS[kind], "count": side["counts"][kind]}
            for kind in (*FAILURES, Kind.NOT_TRIED)
            if side["counts"].get(kind)
        ]
    return {
        "events": len(events),
        "tried": len(events) - len(skipped),
        "sides": [side for side, _ in contents],
        "rows": rows,
        "skipped": skipped,
        "seconds": round(time.monotonic() - started, 2),
    }


def latest(message: TransactionalMessage) -> DraftTry | None:
    """The message's last try still kept."""
    return DraftTry.objects.filter(message=message, expires_at__gt=timezone.now()).first()


def purge_expired(*, now: dt.datetime | None = None) -> int:
    """Delete the tries past their day (the beat's purge, events.retention)."""
    deleted, _ = DraftTry.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
