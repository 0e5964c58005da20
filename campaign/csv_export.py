"""CSV exports of the admin's lists, streamed: rows are read from the database in chunks
(`.iterator(chunk_size=...)`, a server-side cursor on PostgreSQL) and written out as they come, so an
export of millions of rows holds one chunk in memory, never the whole list.

Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` as a formula; an event's ctx or a
recipient comes from outside, so such a cell is written with a leading `'` (CSV injection).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse

CHUNK_SIZE = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """The text of one cell, defused if a spreadsheet would read it as a formula."""
    if value is None:
        return ""
    if isinstance(value, dict | list):  # a JSON column (an event's ctx)
        value = json.dumps(value, ensure_ascii=False, default=str)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


class _Line:
    """A file-like object whose write() hands back the line instead of keeping it."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([safe_cell(value) for value in row])


def stream_csv(
    *, filename: str, header: Sequence[str], queryset: QuerySet, columns: Sequence[str]
) -> StreamingHttpResponse:
    """`columns` of `queryset` (field paths for values_list) as a CSV download, read in chunks."""
    rows = queryset.values_list(*columns).iterator(chunk_size=CHUNK_SIZE)
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
