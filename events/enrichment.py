"""Enrichment: what a configuration's joins (events.models.Enrichment) add to an event's message,
without targeting anyone.

* A profile join matches an event field to a profile field: the template sees the profile as
  `profile.*`. The message still goes to the event's recipient and the event stays event-based
  (never counted for fatigue: the event is not linked to the profile).
* A resource join matches the key field of a collection's items to a custom resource's rows: each
  item gets the row under the join's name (`{{ item.product.title }}`).

The joins are those frozen in the published schema (`enrichments`, events.schema.build_schema). The
rows and profiles a batch's events join are read at once (events.selectors.EnrichmentLookup). A
missing match renders as empty (an empty row, no profile fields), or, if the join is `required`,
ends the event `targetingFailed` with the reason (the pipeline records it through transitions).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from events.selectors import EnrichmentLookup, ProfileKey, RowKey, profile_key

PROFILE = "profile"
RESOURCE = "resource"
MAX_ENRICHMENTS = 20  # joins per event type (the admin's rows, the configuration file's entries)


class EnrichmentFailed(Exception):
    """A required join found nothing; the message says which (the event's status reason)."""


@dataclass(frozen=True)
class Enriched:
    ctx: dict[str, Any]  # the event's data with each joined item's row
    profile: dict[str, Any] | None  # the joined profile's fields (a profile join), else None
    joins_profile: bool = False  # the configuration has a profile join (even if nothing matched)


def joins_of(schema: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((schema or {}).get("enrichments") or [])


def _present(value: Any) -> bool:
    return value is not None and value != "" and not isinstance(value, dict | list)


def wanted(
    keyed: Iterable[tuple[int, dict[str, Any] | None, dict[str, Any]]],
) -> tuple[set[RowKey], set[ProfileKey]]:
    """The rows and profiles that (organization id, schema, ctx) triples join."""
    rows: set[RowKey] = set()
    profiles: set[ProfileKey] = set()
    for organization_id, schema, ctx in keyed:
        for join in joins_of(schema):
            if join.get("kind") == PROFILE:
                value = ctx.get(join["eventField"])
                if _present(value):
                    profiles.add(profile_key(organization_id, join["profileField"], value))
            elif join.get("kind") == RESOURCE and join.get("resourceId"):
                items = ctx.get(join["collection"])
                for item in items if isinstance(items, list) else []:
                    value = item.get(join["field"]) if isinstance(item, dict) else None
                    if _present(value):
                        rows.add((join["resourceId"], str(value)))
    return rows, profiles


def read_for_events(lookup: EnrichmentLookup, events: Iterable[Any]) -> None:
    """Read what these events' enrichments join, at once (a query per resource set, not per item)."""
    rows, profiles = wanted(
        (event.organization_id, event.configuration.published_schema, event.ctx)
        for event in events
        if joins_of(event.configuration.published_schema)
    )
    if rows or profiles:
        lookup.read(rows, profiles)


def enrich(
    *, schema: dict[str, Any] | None, ctx: dict[str, Any], organization_id: int, lookup: EnrichmentLookup
) -> Enriched:
    """The event's data with its joins made; EnrichmentFailed for a required join that found nothing."""
    joins = joins_of(schema)
    if not joins:
        return Enriched(ctx=ctx, profile=None)
    joined_profile: dict[str, Any] | None = None
    joins_profile = False
    enriched = dict(ctx)
    for join in joins:
        if join.get("kind") == PROFILE:
            joins_profile = True
            value = ctx.get(join["eventField"])
            profile = (
                lookup.profile(profile_key(organization_id, join["profileField"], value))
                if _present(value)
                else None
            )
            if profile is None:
                if join.get("required"):
                    raise EnrichmentFailed(
                        f"no profile has {join['profileField']} = ctx.{join['eventField']} "
                        "(required enrichment)"
                    )
                joined_profile = {}
            else:
                joined_profile = profile.as_context()
        elif join.get("kind") == RESOURCE:
            collection, key_field, name = join["collection"], join["field"], join["name"]
            items = ctx.get(collection)
            if not isinstance(items, list):
                continue
            joined_items = []
            for index, item in enumerate(items):
                if not isinstance(item, dict):
                    joined_items.append(item)
                    continue
                value = item.get(key_field)
                row = (
                    lookup.row(join["resourceId"], str(value))
                    if _present(value) and join.get("resourceId")
                    else None
                )
                if row is None and join.get("required"):
                    shown = str(value)[:80] if value is not None else "no key"
                    raise EnrichmentFailed(
                        f"the resource {join['resource']} has no row '{shown}' "
                        f"(ctx.{collection}[{index}].{key_field}, required enrichment)"
                    )
                joined_items.append({**item, name: row if row is not None else {}})
            enriched[collection] = joined_items
    return Enriched(ctx=enriched, profile=joined_profile, joins_profile=joins_profile)


def enrich_sample(*, schema: dict[str, Any], ctx: dict[str, Any], organization_id: int) -> Enriched:
    """A preview's or a proof's sample data with its resource rows (read now, one query); a
    required join that finds nothing renders as empty here: a preview shows what it can."""
    lookup = EnrichmentLookup()
    relaxed = {**schema, "enrichments": [{**join, "required": False} for join in joins_of(schema)]}
    rows, _ = wanted([(organization_id, relaxed, ctx)])
    lookup.read(rows, set())
    # The profile of a preview is the test profile chosen, or a stand-in (messages.services).
    without_profiles = {
        **relaxed,
        "enrichments": [join for join in joins_of(relaxed) if join.get("kind") != PROFILE],
    }
    enriched = enrich(schema=without_profiles, ctx=ctx, organization_id=organization_id, lookup=lookup)
    return Enriched(ctx=enriched.ctx, profile=None, joins_profile=_joins_profile(schema))


def _joins_profile(schema: dict[str, Any]) -> bool:
    return any(join.get("kind") == PROFILE for join in joins_of(schema))
