"""The rules of a recipient's address shared by every way one arrives (the API, the profile
import, a proof): one place, so that all of them store the same normalised value."""

from __future__ import annotations

from typing import Any

import phonenumbers


class InvalidAddress(ValueError):
    pass


def normalise_phone(value: Any) -> str:
    """A mobile phone in E.164 (`+33 6 12 34 56 78` -> `+33612345678`), or InvalidAddress."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidAddress("is required for an SMS event (E.164, e.g. +33612345678)")
    try:
        number = phonenumbers.parse(value, None if value.strip().startswith("+") else "US")
    except phonenumbers.NumberParseException:
        raise InvalidAddress(f"'{value}' is not a phone number") from None
    # International numbers: "possible" (the right length for their country), not "valid": numbering
    # plans change faster than the library, and test ranges such as +1 555 0100 must pass. A number
    # without a country code is ambiguous: it is read as a US number only if it is a valid one.
    international = value.strip().startswith("+")
    acceptable = phonenumbers.is_possible_number if international else phonenumbers.is_valid_number
    if not acceptable(number):
        raise InvalidAddress(f"'{value}' is not a valid phone number (E.164, e.g. +33612345678)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
