"""Adobe's paging of an event list: `_lineCount` events newest first, and a `next` link whose
`_lineStart` is the PKey of the first event of the next page (a cursor: stable while events arrive)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.request import Request
from rest_framework.response import Response

from campaign.api_errors import FieldError


class LineCursorPagination:
    def paginate(
        self, events: QuerySet, request: Request, *, line_count: int, line_start: str | None
    ) -> list:
        """One page of `events` (ordered newest first); remembers where the next page starts."""
        if line_start:
            start = events.filter(pkey=line_start).values_list("id", flat=True).first()
            if start is None:
                raise FieldError("_lineStart", "_lineStart is not the PKey of an event of this list.")
            events = events.filter(id__lte=start)
        page = list(events[: line_count + 1])
        self.request, self.line_count = request, line_count
        self.next_start = page[line_count].pkey if len(page) > line_count else None
        return page[:line_count]

    def response(self, content: list[dict[str, Any]]) -> Response:
        body: dict[str, Any] = {"content": content}
        if self.next_start is not None:
            query = self.request.query_params.copy()
            query["_lineCount"] = str(self.line_count)
            query["_lineStart"] = self.next_start
            url = f"{self.request.path}?{query.urlencode()}"
            body["next"] = {"href": self.request.build_absolute_uri(url)}
        return Response(body)
