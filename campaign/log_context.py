"""The event being handled, carried into every log line of the web request or the worker task
that handles it (as `pkey` and `organization`, fields of the JSON logs)."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

_pkey: contextvars.ContextVar[str] = contextvars.ContextVar("pkey", default="-")
_organization: contextvars.ContextVar[str] = contextvars.ContextVar("organization", default="-")


@contextmanager
def event_context(*, pkey: str = "-", organization: str = "-") -> Iterator[None]:
    tokens = (_pkey.set(pkey), _organization.set(organization))
    try:
        yield
    finally:
        _pkey.reset(tokens[0])
        _organization.reset(tokens[1])


def set_organization(organization: str) -> None:
    """For the rest of this request: set by the API once the caller is known."""
    _organization.set(organization)


class EventContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "pkey"):
            record.pkey = _pkey.get()
        if not hasattr(record, "organization"):
            record.organization = _organization.get()
        return True
