"""The bounds every value from outside keeps, whoever sends it (the event API, the profile import,
the preview's sample data): text without NUL or lone surrogates and of bounded length, numbers
in plain decimal notation of bounded precision, collections of bounded size.

JSON is read here with its numbers kept as the text the caller sent (`Decimal`, never a float),
so `1e99999999` or a 400-digit number is refused by name instead of becoming `inf` or a rounded
value; a value that breaks a bound is kept as an `OutOfBounds` marker, and whoever validates the
field it sits in names the field.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

MAX_SIGNIFICANT_DIGITS = 30
INTEGER_MIN, INTEGER_MAX = -(2**63), 2**63 - 1
PLAIN_DECIMAL = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
PLAIN_DECIMAL_PATTERN = r"^[+-]?\d+(\.\d+)?$"  # the same, as the OpenAPI schema states it
_JSON_PLAIN_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_FORBIDDEN_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


class JsonSyntaxError(ValueError):
    """Text that is not JSON at all (the API answers it 400 `malformedJson`)."""


@dataclass(frozen=True)
class OutOfBounds:
    """A JSON number the bounds refuse (exponent, NaN, Infinity, too many digits), kept so that the
    field it stands in can be named when the body is validated."""

    text: str
    reason: str

    def __str__(self) -> str:
        return self.text


def significant_digits(number: Decimal) -> int:
    digits = number.as_tuple().digits
    return len("".join(map(str, digits)).lstrip("0")) or 1


def decimal_problem(text: str) -> str | None:
    """Why a decimal's text is refused, or None: plain notation, at most 30 significant digits."""
    if not PLAIN_DECIMAL.match(text):
        return "must be a decimal number in plain notation (e.g. 125.50): no exponent, NaN or Infinity"
    if significant_digits(Decimal(text)) > MAX_SIGNIFICANT_DIGITS:
        return f"has more than {MAX_SIGNIFICANT_DIGITS} significant digits"
    return None


def integer_problem(value: int) -> str | None:
    if not INTEGER_MIN <= value <= INTEGER_MAX:
        return "is outside the 64-bit integer range"
    return None


@functools.cache
def _text_max_length() -> int:
    """TEXT_MAX_LENGTH, read once: every text of every POST is checked against it, and reading a
    setting costs more than the check (a test that changes it clears this, below)."""
    return settings.TEXT_MAX_LENGTH


@receiver(setting_changed, dispatch_uid="campaign.bounds.text_max_length")
def _forget_text_max_length(*, setting: str, **kwargs: Any) -> None:
    if setting == "TEXT_MAX_LENGTH":
        _text_max_length.cache_clear()


def text_problem(value: str, *, max_length: int | None = None) -> str | None:
    """Why a text is refused, or None: no U+0000, no lone surrogate, at most `max_length` (default:
    the TEXT_MAX_LENGTH setting) characters."""
    limit = max_length or _text_max_length()
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if _FORBIDDEN_CHARACTERS.search(value):
        return "contains a NUL character (U+0000) or a lone surrogate"
    return None


def collection_problem(items: list) -> str | None:
    limit = settings.COLLECTION_MAX_ITEMS
    if len(items) > limit:
        return f"has more than {limit} items"
    return None


def _json_float(text: str) -> Decimal | OutOfBounds:
    if not _JSON_PLAIN_NUMBER.match(text):
        return OutOfBounds(text, "must be a number in plain decimal notation (e.g. 125.50): no exponent")
    if significant_digits(Decimal(text)) > MAX_SIGNIFICANT_DIGITS:
        return OutOfBounds(text, f"has more than {MAX_SIGNIFICANT_DIGITS} significant digits")
    return Decimal(text)


def _json_int(text: str) -> int | OutOfBounds:
    # Never int() a huge text: a number this long fits no field, and parsing it costs.
    if len(text.lstrip("-").lstrip("0")) > MAX_SIGNIFICANT_DIGITS:
        return OutOfBounds(text, f"has more than {MAX_SIGNIFICANT_DIGITS} significant digits")
    return int(text)


def _json_constant(text: str) -> OutOfBounds:
    return OutOfBounds(text, f"must be a number in plain decimal notation, not {text}")


_DECODER = json.JSONDecoder(parse_float=_json_float, parse_int=_json_int, parse_constant=_json_constant)


def load_json(text: str) -> Any:
    """Parse JSON with numbers as `int` / `Decimal` (or `OutOfBounds`); JsonSyntaxError otherwise."""
    try:
        value, end = _DECODER.raw_decode(text, len(text) - len(text.lstrip()))
    except json.JSONDecodeError as error:
        raise JsonSyntaxError(f"Malformed JSON: {error}") from None
    except RecursionError:
        raise JsonSyntaxError("Malformed JSON: nested too deeply") from None
    if text[end:].strip():
        raise JsonSyntaxError(f"Malformed JSON: extra data at character {end}")
    return value


def json_number(value: Decimal) -> int | float | str:
    """A validated decimal as it is stored: an int or a float when either holds it exactly, else the
    same digits as a string (so no digit the caller sent is lost to a float's rounding)."""
    if value == value.to_integral_value() and "." not in str(value):
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)
