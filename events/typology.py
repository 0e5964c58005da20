"""Typology and fatigue rules: which profile-based messages are not sent, and why.

They apply to profile-based messages only (never to event-based ones), after the profile is found
and before the message is rendered, in this order:

1. "address on denylist" (code `denylist`, built in, always on): the profile opted out of the
   message's channel, or is blocklisted;
2. the profile filters of the configuration's typology (its own, else the organization's default),
   in their order: a profile whose fields match a filter's conditions is excluded (its code);
3. (quarantine, which is not a typology rule: it applies to every event, as before;)
4. the typology's duplicate rules: the same event type, profile and `ctx` admitted within the rule's
   window (its code, `duplicate` by default);
5. the organization's fatigue rules (code `fatigue`): at most N profile-based messages per profile
   per period, on one channel or on all.

Steps 4 and 5 read what was admitted before (`ProfileSend`: one row per profile-based message let
through, written before its send) and are decided under a lock on the profile's row (SELECT ... FOR
UPDATE on PostgreSQL), in the same transaction that writes the new row: two workers (processes or
machines) deciding for the same profile take turns, so a burst of 50 events with a cap of 3 sends
exactly 3. SQLite has no row locks; it serves one worker process, whose events of one profile are
decided one after the other anyway.

An excluded event ends `ignored` with the reason `<code>: <name>` (e.g. `fatigue: One a day`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from campaign import encryption, generations
from campaign.models import Organization, Profile
from events import reasons
from events.models import (
    DUPLICATE_WINDOW_MAX_MINUTES,
    FATIGUE_MAX_MESSAGES,
    FATIGUE_MAX_PERIOD_HOURS,
    FILTER_MAX_CONDITIONS,
    FILTER_VALUE_MAX_LENGTH,
    Event,
    EventConfiguration,
    FatigueRule,
    FilterCondition,
    ProfileSend,
    Typology,
    TypologyRule,
)

DENYLIST = "denylist"
DENYLIST_NAME = "Address on denylist"
DUPLICATE = "duplicate"
FATIGUE = "fatigue"
DEFAULT_TYPOLOGY_NAME = "Default"

# What a profile-based message admitted earlier must have become to still count: sent, or on its
# way (a retry, a pause). One that failed or was dropped was never received.
NOT_COUNTED = (
    Event.Status.IGNORED,
    Event.Status.DELIVERY_FAILED,
    Event.Status.ROUTING_FAILED,
    Event.Status.TOO_OLD,
    Event.Status.TARGETING_FAILED,
)

FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
Op = FilterCondition.Operator
VALUELESS = {Op.IS_EMPTY, Op.IS_NOT_EMPTY}
NUMERIC = {Op.GREATER_THAN, Op.LESS_THAN}

CACHE = generations.ProcessCache("typology")
CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class Exclusion:
    """Why a profile-based message is not sent: a rule's stable code and its name."""

    code: str
    name: str
    kind: str = "filter"  # filter, duplicate, denylist or fatigue

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.name}"

    @property
    def status_code(self) -> str:
        """The event's reason code (events.reasons): `optedOut`, `fatigue`, `duplicate`, or
        `typology:<the filter's code>`."""
        if self.kind == DENYLIST:
            return reasons.OPTED_OUT
        if self.kind == FATIGUE:
            return reasons.FATIGUE
        if self.kind == "duplicate":
            return reasons.DUPLICATE
        return reasons.typology(self.code)


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    value: str


@dataclass(frozen=True)
class Filter:
    code: str
    name: str
    combine: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Duplicate:
    code: str
    name: str
    window: dt.timedelta


@dataclass(frozen=True)
class Fatigue:
    name: str
    channel: str  # "": every channel
    max_messages: int
    period: dt.timedelta


@dataclass(frozen=True)
class Rules:
    """What a configuration's messages pass (read once, cached per process)."""

    filters: tuple[Filter, ...] = ()
    duplicates: tuple[Duplicate, ...] = ()
    fatigue: tuple[Fatigue, ...] = ()

    @property
    def need_history(self) -> bool:
        return bool(self.duplicates or self.fatigue)


# --- Reading the rules --------------------------------------------------------------------------------


def default_typology(*, organization: Organization) -> Typology:
    """The organization's default typology, made if it has none yet."""
    found = Typology.objects.filter(organization=organization, is_default=True).first()
    if found is not None:
        return found
    typology, _ = Typology.objects.get_or_create(
        organization=organization, name=DEFAULT_TYPOLOGY_NAME, defaults={"is_default": True}
    )
    return typology


def rules_for(configuration: EventConfiguration) -> Rules:
    """The active rules of the configuration's typology (else the default one) and its
    organization's fatigue rules; cached, and read again within a second of any change."""
    key = (configuration.organization_id, configuration.typology_id)
    generation = CACHE.generation()
    found = CACHE.get(key, generation)
    if isinstance(found, Rules):
        return found
    rules = _read_rules(organization_id=configuration.organization_id, typology_id=configuration.typology_id)
    CACHE.put(key, rules, generation=generation, seconds=CACHE_SECONDS)
    return rules


def _read_rules(*, organization_id: int, typology_id: int | None) -> Rules:
    typologies = Typology.objects.filter(organization_id=organization_id)
    typology = typologies.filter(pk=typology_id).first() if typology_id else None
    if typology is None:
        typology = typologies.filter(is_default=True).first()
    filters: list[Filter] = []
    duplicates: list[Duplicate] = []
    if typology is not None:
        rules = TypologyRule.objects.filter(typology=typology, active=True).prefetch_related("conditions")
        for rule in rules:
            if rule.kind == TypologyRule.Kind.DUPLICATE and rule.window_minutes:
                duplicates.append(Duplicate(rule.code, rule.name, dt.timedelta(minutes=rule.window_minutes)))
            elif rule.kind == TypologyRule.Kind.FILTER:
                conditions = tuple(Condition(c.field, c.operator, c.value) for c in rule.conditions.all())
                if conditions:
                    filters.append(Filter(rule.code, rule.name, rule.combine, conditions))
    fatigue = [
        Fatigue(rule.name, rule.channel, rule.max_messages, dt.timedelta(hours=rule.period_hours))
        for rule in FatigueRule.objects.filter(organization_id=organization_id, active=True)
    ]
    return Rules(tuple(filters), tuple(duplicates), tuple(fatigue))


def _changed(sender: Any, **kwargs: Any) -> None:
    generations.bump(CACHE.name)
    generations.forget_checks()  # this process sees its own change at once


def _organization_saved(sender: Any, instance: Organization, created: bool, **kwargs: Any) -> None:
    if created and not kwargs.get("raw"):
        default_typology(organization=instance)


def hand_in() -> None:
    """Connect the signals: a change of a rule reaches every worker; a new organization has its
    default typology."""
    for model in (Typology, TypologyRule, FilterCondition, FatigueRule):
        post_save.connect(_changed, sender=model, dispatch_uid=f"typology.changed.{model.__name__}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"typology.deleted.{model.__name__}")
    post_save.connect(_organization_saved, sender=Organization, dispatch_uid="typology.default_typology")


# --- Deciding -----------------------------------------------------------------------------------------


def screen(*, configuration: EventConfiguration, profile: Profile, rules: Rules) -> Exclusion | None:
    """The rules that need only the profile (steps 1 and 2), in memory."""
    if profile.blocklisted or profile.opted_out_of(configuration.channel):
        return Exclusion(DENYLIST, DENYLIST_NAME, kind=DENYLIST)
    if rules.filters:
        fields = profile.as_context()
        for rule in rules.filters:
            if matches(rule, fields):
                return Exclusion(rule.code, rule.name)
    return None


def matches(rule: Filter, fields: dict[str, object]) -> bool:
    results = (_holds(condition, fields.get(condition.field)) for condition in rule.conditions)
    return all(results) if rule.combine == TypologyRule.Combine.AND else any(results)


def _holds(condition: Condition, actual: object) -> bool:
    text = "" if actual is None else str(actual)
    wanted = condition.value
    match condition.operator:
        case Op.IS_EMPTY:
            return text == ""
        case Op.IS_NOT_EMPTY:
            return text != ""
        case Op.EQUALS:
            return text.casefold() == wanted.casefold()
        case Op.NOT_EQUALS:
            return text.casefold() != wanted.casefold()
        case Op.CONTAINS:
            return wanted.casefold() in text.casefold()
        case Op.STARTS_WITH:
            return text.casefold().startswith(wanted.casefold())
        case Op.GREATER_THAN | Op.LESS_THAN:
            number, limit = _number(text), _number(wanted)
            if number is None or limit is None:
                return False  # a field that is not a number matches no comparison
            return number > limit if condition.operator == Op.GREATER_THAN else number < limit
    return False


def _number(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def ctx_digest(ctx: dict[str, Any], *, keyed: bool = False) -> str:
    """The same `ctx` (whatever its keys' order) gives the same digest; `keyed` (a ctx holding
    sensitive values, events.sensitive): an HMAC under the encryption key, so that the stored digest
    cannot be matched against guesses of a value."""
    data = orjson.dumps(ctx, option=orjson.OPT_SORT_KEYS)
    return encryption.keyed_digest(data) if keyed else hashlib.sha256(data).hexdigest()


def admit(
    *, event: Event, profile: Profile, channel: str, rules: Rules, now: dt.datetime
) -> Exclusion | None:
    """Steps 4 and 5, then the record of the message let through, as one transaction under the
    profile's row lock when a rule reads the history (see the module's docstring). Returns the
    exclusion, or None when the message may be sent (and is counted from now on)."""
    digest = ctx_digest(event.ctx, keyed=bool(getattr(event, "sensitive_paths", None)))
    if not rules.need_history:
        _record(event=event, profile=profile, channel=channel, digest=digest, now=now)
        return None
    with transaction.atomic():
        # The lock every decision about this profile takes in turn, until this transaction ends.
        Profile.objects.select_for_update().filter(pk=profile.pk).values_list("pk").first()
        if event.attempts > 1 and ProfileSend.objects.filter(event_id=event.pk).exists():
            return None  # admitted by an earlier attempt: still counted, not counted twice
        admitted = ProfileSend.objects.filter(profile_id=profile.pk).exclude(event_id=event.pk)
        admitted = admitted.exclude(event__status__in=NOT_COUNTED)
        for duplicate in rules.duplicates:
            same = admitted.filter(
                configuration_id=event.configuration_id,
                ctx_digest=digest,
                admitted_at__gt=now - duplicate.window,
            )
            if same.exists():
                return Exclusion(duplicate.code, duplicate.name, kind="duplicate")
        for fatigue in rules.fatigue:
            if fatigue.channel and fatigue.channel != channel:
                continue
            counted = admitted.filter(admitted_at__gt=now - fatigue.period)
            if fatigue.channel:
                counted = counted.filter(channel=fatigue.channel)
            if counted.count() >= fatigue.max_messages:
                return Exclusion(FATIGUE, fatigue.name, kind=FATIGUE)
        _record(event=event, profile=profile, channel=channel, digest=digest, now=now)
    return None


def _record(*, event: Event, profile: Profile, channel: str, digest: str, now: dt.datetime) -> None:
    # A retry (or a statement repeated after a lost connection) finds its row there: kept as it is.
    ProfileSend.objects.bulk_create(
        [
            ProfileSend(
                profile_id=profile.pk,
                event_id=event.pk,
                configuration_id=event.configuration_id,
                channel=channel,
                ctx_digest=digest,
                admitted_at=now,
            )
        ],
        ignore_conflicts=True,
    )


# --- Checking what the admin saves ----------------------------------------------------------------------


def condition_problem(*, field: str, operator: str, value: str) -> dict[str, str]:
    """What is wrong with a filter condition, by form field (empty: nothing)."""
    problems: dict[str, str] = {}
    if not FIELD_NAME.match(field or ""):
        problems["field"] = (
            "A profile field name: letters, digits and '_', starting with a letter, at most 64 characters "
            f"({', '.join(Profile.STANDARD_FIELDS)}, or a field of the profile's data)."
        )
    if operator not in Op.values:
        problems["operator"] = f"One of {', '.join(Op.values)}."
    elif operator in VALUELESS:
        if value:
            problems["value"] = f"'{Op(operator).label}' takes no value."
    elif not value:
        problems["value"] = "This operator needs a value."
    elif len(value) > FILTER_VALUE_MAX_LENGTH:
        problems["value"] = f"At most {FILTER_VALUE_MAX_LENGTH} characters."
    elif operator in NUMERIC and _number(value) is None:
        problems["value"] = f"'{value}' is not a number."
    return problems


def rule_problem(*, kind: str, window_minutes: int | None) -> dict[str, str]:
    """What is wrong with a typology rule's own fields, by form field (empty: nothing)."""
    if kind == TypologyRule.Kind.DUPLICATE:
        if window_minutes is None or not 1 <= window_minutes <= DUPLICATE_WINDOW_MAX_MINUTES:
            limit = DUPLICATE_WINDOW_MAX_MINUTES
            return {"window_minutes": f"A duplicate rule needs a window of 1 to {limit} minutes."}
    elif window_minutes is not None:
        return {"window_minutes": "Only a duplicate rule has a window."}
    return {}


def conditions_problem(*, kind: str, conditions: int) -> str:
    """What is wrong with the number of a rule's conditions (empty: nothing)."""
    if kind == TypologyRule.Kind.DUPLICATE:
        return "A duplicate rule has no conditions." if conditions else ""
    if conditions < 1:
        return "A profile filter needs at least one condition."
    if conditions > FILTER_MAX_CONDITIONS:
        return f"A profile filter has at most {FILTER_MAX_CONDITIONS} conditions."
    return ""


def fatigue_problem(*, max_messages: int | None, period_hours: int | None) -> dict[str, str]:
    problems: dict[str, str] = {}
    if max_messages is None or not 1 <= max_messages <= FATIGUE_MAX_MESSAGES:
        problems["max_messages"] = f"From 1 to {FATIGUE_MAX_MESSAGES} messages."
    if period_hours is None or not 1 <= period_hours <= FATIGUE_MAX_PERIOD_HOURS:
        problems["period_hours"] = f"From 1 to {FATIGUE_MAX_PERIOD_HOURS} hours."
    return problems
