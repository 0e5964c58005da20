"""The event API's body parser: JSON under `application/json` or `text/plain` (Adobe's own Node SDK
sends its JSON as `text/plain;charset=UTF-8`), refused when oversized before it is read whole, and
read with its numbers as sent (campaign.bounds), never through a float."""

from __future__ import annotations

import codecs

from django.conf import settings
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser

from campaign import bounds
from campaign.api_errors import RequestTooLarge

JSON_MEDIA_TYPES = ("application/json", "text/plain")


def is_json_media_type(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in JSON_MEDIA_TYPES


class LimitedJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        charset = (parser_context or {}).get("encoding") or "utf-8"
        if "charset=" in (media_type or ""):
            charset = media_type.split("charset=", 1)[1].split(";")[0].strip().strip('"') or "utf-8"
        try:
            text = raw.decode(codecs.lookup(charset).name)
        except LookupError:
            raise UnsupportedMediaType(media_type, f"Unknown charset '{charset}'.") from None
        except UnicodeDecodeError:
            raise ParseError(f"The body is not valid {charset}.") from None
        if not text.strip():
            raise ParseError("The request body is empty; a JSON object is expected.")
        try:
            return bounds.load_json(text)
        except bounds.JsonSyntaxError as error:
            raise ParseError(str(error)) from None


class TextPlainJSONParser(LimitedJSONParser):
    """The same JSON, labelled `text/plain` (a CORS-simple request; Adobe's SDK sends it so)."""

    media_type = "text/plain"
