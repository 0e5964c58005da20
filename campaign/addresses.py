"""Addresses as the platform compares them: email domains normalised (lower case, IDNA-checked,
bounded), email addresses lower-cased, mobile phones in E.164. Pure functions, no queries: the
models validate with them, and the sender and proof rules (campaign.senders) compare with them.

A domain is stored in its ASCII form (IDNA A-labels: `bücher.example` -> `xn--bcher-kva.example`), so
that an address written with either form of the same domain matches it.
"""

from __future__ import annotations

import re

import idna
import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

DOMAIN_MAX_LENGTH = 253  # RFC 1035, without the trailing dot
LABEL_MAX_LENGTH = 63
_ASCII_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")


def normalise_domain(value: str) -> str:
    """A domain name in lower-case ASCII (A-labels), or ValidationError saying what is wrong.

    At least two labels (a sender or proof domain is never a bare top-level name), each 1 to 63
    characters of letters, digits and inner hyphens, 253 characters in all."""
    text = (value or "").strip().rstrip(".").lower()
    if not text:
        raise ValidationError("Enter a domain name, e.g. example.com.")
    if len(text) > DOMAIN_MAX_LENGTH:  # the Unicode form is never longer than the ASCII one
        raise ValidationError(f"A domain name has at most {DOMAIN_MAX_LENGTH} characters.")
    if "@" in text:
        raise ValidationError(f"'{value}' is an address, not a domain: give only what follows the @.")
    try:
        ascii_form = idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise ValidationError(f"'{value}' is not a valid domain name.") from None
    labels = ascii_form.split(".")
    if len(ascii_form) > DOMAIN_MAX_LENGTH:
        raise ValidationError(f"A domain name has at most {DOMAIN_MAX_LENGTH} characters.")
    if len(labels) < 2:
        raise ValidationError(f"'{value}' is not a full domain name (e.g. example.com).")
    if not all(len(label) <= LABEL_MAX_LENGTH and _ASCII_LABEL.match(label) for label in labels):
        raise ValidationError(f"'{value}' is not a valid domain name.")
    return ascii_form


def normalise_email(value: str) -> str:
    """An email address with its domain normalised as above, or ValidationError."""
    text = (value or "").strip()
    try:
        validate_email(text)
    except ValidationError:
        raise ValidationError(f"'{value}' is not an email address.") from None
    local, _, domain = text.rpartition("@")
    return f"{local.lower()}@{normalise_domain(domain)}"


def domain_of(address: str) -> str:
    """The normalised domain of an email address; "" if it has none worth comparing."""
    _, at, domain = (address or "").strip().rpartition("@")
    if not at:
        return ""
    try:
        return normalise_domain(domain)
    except ValidationError:
        return ""


def phone_number(value: str) -> str:
    """A mobile phone in E.164, or ValueError with the reason: the API's rule (events.schema uses it).

    International numbers must be "possible" (the right length for their country), not "valid":
    numbering plans change faster than the library, and test ranges such as +1 555 0100 must pass.
    A number without a country code is ambiguous: it is read as a US number only if it is a valid one.
    """
    international = value.strip().startswith("+")
    try:
        number = phonenumbers.parse(value, None if international else "US")
    except phonenumbers.NumberParseException:
        raise ValueError(f"'{value}' is not a phone number") from None
    acceptable = phonenumbers.is_possible_number if international else phonenumbers.is_valid_number
    if not acceptable(number):
        raise ValueError(f"'{value}' is not a valid phone number (E.164, e.g. +33612345678)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# The GSM 03.38 basic character set an alphanumeric SMS sender may use (letters, digits, space and
# a few signs carriers accept); 11 characters at most (the TP-OA field holds 11 GSM-7 characters).
_GSM_SENDER = re.compile(r"^[A-Za-z0-9 .\-_&+!?'@#%()*/:;<=>,]{1,11}$")
SHORT_CODE = re.compile(r"^[0-9]{3,8}$")


def sms_sender(value: str) -> str:
    """An SMS sender as it is sent: an E.164 number, a short code of 3 to 8 digits, or an
    alphanumeric sender of 1 to 11 GSM characters with at least one letter; ValueError otherwise."""
    value = value.strip()
    if value.startswith("+"):
        return phone_number(value)
    if SHORT_CODE.match(value):
        return value
    if _GSM_SENDER.match(value) and any(c.isalpha() for c in value) and value == value.strip():
        return value
    raise ValueError(
        f"'{value[:40]}' is not an SMS sender: an E.164 number (+33612345678), a short code of 3 to 8 "
        "digits, or 1 to 11 letters, digits, spaces or basic signs with at least one letter"
    )
