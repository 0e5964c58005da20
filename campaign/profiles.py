"""Profile import from CSV: header row of profile fields, updates by email, all or nothing."""

from __future__ import annotations

import csv
import re
from typing import TextIO

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models.functions import Lower

from campaign import bounds
from campaign.addresses import phone_number
from campaign.models import OPT_OUT_COLUMNS, Organization, Profile

COLUMNS = Profile.STANDARD_COLUMNS
# A column -> the flags it sets: `optedOut` (the single flag of earlier files) opts out of every channel.
BOOLEAN_COLUMNS = {
    "optedOut": tuple(OPT_OUT_COLUMNS.values()),
    "optedOutEmail": (OPT_OUT_COLUMNS["email"],),
    "optedOutSms": (OPT_OUT_COLUMNS["sms"],),
    "optedOutPush": (OPT_OUT_COLUMNS["push"],),
    "blocklisted": ("blocklisted",),
    "testProfile": ("is_test",),
}
CHANNEL_OPT_OUT_COLUMNS = {"optedOutEmail", "optedOutSms", "optedOutPush"}
CHANNEL_OPT_OUT_COLUMNS_BY_FLAG = {BOOLEAN_COLUMNS[c][0]: c for c in CHANNEL_OPT_OUT_COLUMNS}
TRUE, FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n", ""}
# A language code as variants are keyed (the model has no rule of its own): an ISO 639 code of 2 or 3
# letters, then optional subtags, as choose_variant() reads them: `en`, `fr`, `pt-BR`, `zh_Hant`.
LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


class ProfileFileError(Exception):
    pass


def import_profiles_csv(*, organization: Organization, handle: TextIO) -> tuple[int, int]:
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    if "email" not in header:
        raise ProfileFileError("The CSV header must have an 'email' column.")
    rows: dict[str, dict] = {}
    try:
        for line, row in enumerate(reader, start=2):
            if None in row:
                raise ProfileFileError(f"line {line}: more values than header columns")
            email = (row.get("email") or "").strip().lower()
            try:
                validate_email(email)
            except ValidationError:
                raise ProfileFileError(f"line {line}: email: '{email}' is not an email address") from None
            values: dict = {"data": {}}
            for column, raw in row.items():
                raw = (raw or "").strip()
                limit = _max_length(COLUMNS[column]) if column in COLUMNS else None
                problem = bounds.text_problem(column or "", max_length=64) or bounds.text_problem(
                    raw, max_length=limit
                )
                if problem:
                    raise ProfileFileError(f"line {line}: {column}: {problem}")
                if column in COLUMNS:
                    if column == "email":
                        raw = raw.lower()
                    elif column == "mobilePhone" and raw:
                        try:
                            raw = phone_number(raw)
                        except ValueError as error:
                            raise ProfileFileError(f"line {line}: {column}: {error}") from None
                    elif column == "language" and raw and not LANGUAGE.match(raw):
                        raise ProfileFileError(
                            f"line {line}: {column}: '{raw}' is not a language code (en, fr, pt-BR...)"
                        )
                    values[COLUMNS[column]] = raw
                elif column in BOOLEAN_COLUMNS:
                    if raw.lower() not in TRUE | FALSE:
                        raise ProfileFileError(f"line {line}: {column}: '{raw}' is not true or false")
                    if column in CHANNEL_OPT_OUT_COLUMNS and not raw and "optedOut" in row:
                        continue  # left empty: `optedOut` says it
                    flags = BOOLEAN_COLUMNS[column]
                    if column == "optedOut":  # a channel's own column, filled in, says more
                        flags = tuple(
                            f
                            for f in flags
                            if not (row.get(CHANNEL_OPT_OUT_COLUMNS_BY_FLAG[f]) or "").strip()
                        )
                    for flag in flags:
                        values[flag] = raw.lower() in TRUE
                elif column:
                    values["data"][column] = raw
            rows[email] = values
    except csv.Error as error:
        raise ProfileFileError(f"line {reader.line_num}: {error}") from None
    created = updated = 0
    with transaction.atomic():
        # Emails are unique whatever their case (a profile made in the admin may say Jane@Example.com).
        existing = {
            p.email.lower(): p
            for p in Profile.objects.annotate(email_lower=Lower("email")).filter(
                organization=organization, email_lower__in=list(rows)
            )
        }
        for email, values in rows.items():
            profile = existing.get(email)
            if profile is None:
                Profile.objects.create(organization=organization, **values)
                created += 1
            else:
                data = {**profile.data, **values.pop("data")}
                for attribute, value in values.items():
                    setattr(profile, attribute, value)
                profile.data = data
                profile.save()
                updated += 1
    return created, updated


def _max_length(field_name: str) -> int | None:
    return getattr(Profile._meta.get_field(field_name), "max_length", None)
