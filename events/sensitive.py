"""Sensitive fields: a field of a configuration marked `sensitive` keeps its value encrypted at rest
and masked everywhere but in the message sent.

An accepted event is stored with `"***"` in place of each sensitive value in `ctx` (so every reader
of `ctx`: the API's answers, the admin, exports, the person's export, searches, sees the mask), and
the values themselves in `Event.sensitive_ctx`: a Fernet token (campaign.encryption, the keys of
ENCRYPTION_KEYS) of `[[path, value], ...]`, a path being `["name"]` or `["collection", index, "name"]`.
The worker alone opens it (`reveal`), to target, enrich and render the message it sends; what is
rendered for display is rendered from `events.selectors.ctx_for_display`, masked.

The check is one lookup in the published schema (`sensitiveFields`, frozen at publication): an
event type with no sensitive field stores its events as before, with nothing encrypted.
"""

from __future__ import annotations

from typing import Any

import orjson

from campaign import encryption

MASK = "***"

Path = list[str | int]


def has_sensitive(schema: dict[str, Any] | None) -> bool:
    return bool(schema and schema.get("sensitiveFields"))


def seal(schema: dict[str, Any] | None, ctx: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """`ctx` with its sensitive values masked, and the token that holds them ("" if none was given)."""
    if not has_sensitive(schema):
        return ctx, ""
    assert schema is not None
    values: list[tuple[Path, Any]] = []
    masked = dict(ctx)
    for spec in schema.get("fields", []):
        name = spec["name"]
        if spec.get("sensitive") and masked.get(name) is not None:
            values.append(([name], masked[name]))
            masked[name] = MASK
    for collection in schema.get("collections", []):
        names = [spec["name"] for spec in collection["fields"] if spec.get("sensitive")]
        items = masked.get(collection["name"])
        if not names or not isinstance(items, list):
            continue
        copied = []
        for index, item in enumerate(items):
            item = dict(item)
            for name in names:
                if item.get(name) is not None:
                    values.append(([collection["name"], index, name], item[name]))
                    item[name] = MASK
            copied.append(item)
        masked[collection["name"]] = copied
    if not values:
        return ctx, ""
    return masked, encryption.encrypt(orjson.dumps(values).decode())


def sealed_values(token: str) -> list[tuple[Path, Any]]:
    """The [path, value] pairs a token holds (InvalidToken if no key of ENCRYPTION_KEYS opens it)."""
    return [(path, value) for path, value in orjson.loads(encryption.decrypt(token))]


def _set(ctx: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy of `ctx` with `value` at `path`, sharing what it does not change."""
    if len(path) == 1:
        return {**ctx, str(path[0]): value}
    collection, index, name = str(path[0]), int(path[1]), str(path[2])
    items = ctx.get(collection)
    if not isinstance(items, list) or index >= len(items) or not isinstance(items[index], dict):
        return ctx
    items = list(items)
    items[index] = {**items[index], name: value}
    return {**ctx, collection: items}


def clear_ctx(ctx: dict[str, Any], token: str) -> dict[str, Any]:
    """The event's data as it was POSTed: the masked `ctx` with the sealed values put back."""
    if not token:
        return ctx
    for path, value in sealed_values(token):
        ctx = _set(ctx, path, value)
    return ctx


def mask(ctx: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    """`ctx` (perhaps enriched: its items carry joined rows) with `"***"` at each path present."""
    for path in paths:
        if len(path) == 1 and ctx.get(str(path[0])) is None:
            continue
        ctx = _set(ctx, path, MASK)
    return ctx


def reveal(event: Any) -> None:
    """For the worker only, in memory (never saved: the moves write named columns only): the event's
    `ctx` in clear, and `sensitive_paths`, what `ctx_for_display` masks again. If no key of
    ENCRYPTION_KEYS opens them, `sensitive_unreadable` (the pipeline retries the event)."""
    token = event.sensitive_ctx
    if not token:
        return
    try:
        values = sealed_values(token)
    except encryption.InvalidToken:
        event.sensitive_unreadable = True
        return
    ctx = event.ctx
    for path, value in values:
        ctx = _set(ctx, path, value)
    event.sensitive_paths = [path for path, _ in values]
    event.ctx = ctx


def _get(ctx: dict[str, Any], path: Path) -> Any:
    if len(path) == 1:
        return ctx.get(str(path[0]))
    items = ctx.get(str(path[0]))
    index = int(path[1])
    if isinstance(items, list) and index < len(items) and isinstance(items[index], dict):
        return items[index].get(str(path[2]))
    return None


def scrub(text: str, ctx: dict[str, Any], paths: list[Path]) -> str:
    """`text` (a reason the worker wrote: a render error, a missing join) with every sensitive value
    of the (revealed) `ctx` replaced by `"***"`."""
    values = {str(_get(ctx, path)) for path in paths if _get(ctx, path) not in (None, "")}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def rotate(token: str) -> str:
    return encryption.rotate(token) if token else token


def reencrypt_values(*, chunk: int = 1000) -> int:
    """Every event's sensitive values encrypted again under the first key of ENCRYPTION_KEYS (after a
    new key was put first), `chunk` events at a time, each chunk in one transaction; InvalidToken
    if one cannot be opened by any key (the chunks before it are done: run it again once the key
    is back). Returns how many events."""
    from django.db import transaction

    from events.models import Event

    count, after = 0, 0
    while True:
        rows = list(
            Event.objects.exclude(sensitive_ctx="")
            .filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", "sensitive_ctx")[:chunk]
        )
        if not rows:
            return count
        rotated = [(pk, rotate(token)) for pk, token in rows]  # all open, or none of the chunk written
        with transaction.atomic():
            for pk, token in rotated:
                Event.objects.filter(pk=pk).update(sensitive_ctx=token)
        count += len(rotated)
        after = rows[-1][0]
