"""A JSON parser that refuses oversized bodies before reading them whole, and parses with orjson."""

from __future__ import annotations

import codecs

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser

from campaign.api_errors import RequestTooLarge


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
            if codecs.lookup(charset).name != "utf-8":
                raw = raw.decode(charset).encode()
        except LookupError:
            raise UnsupportedMediaType(media_type, f"Unknown charset '{charset}'.") from None
        except UnicodeDecodeError:
            raise ParseError(f"The body is not valid {charset}.") from None
        if not raw.strip():
            raise ParseError("The request body is empty; a JSON object is expected.")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise ParseError(f"Malformed JSON: {error}") from None
