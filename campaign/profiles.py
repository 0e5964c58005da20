"""Profile import from CSV: header row of profile fields, updates by email, all or nothing."""

from __future__ import annotations

import csv
from typing import TextIO

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models.functions import Lower

from campaign.models import Organization, Profile

COLUMNS = {
    "email": "email",
    "firstName": "first_name",
    "lastName": "last_name",
    "mobilePhone": "mobile_phone",
    "language": "language",
}
BOOLEAN_COLUMNS = {"optedOut": "opted_out", "blocklisted": "blocklisted"}
TRUE, FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n", ""}


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
                if column in COLUMNS:
                    limit = Profile._meta.get_field(COLUMNS[column]).max_length
                    if len(raw) > limit:
                        raise ProfileFileError(f"line {line}: {column}: longer than {limit} characters")
                    values[COLUMNS[column]] = raw.lower() if column == "email" else raw
                elif column in BOOLEAN_COLUMNS:
                    if raw.lower() not in TRUE | FALSE:
                        raise ProfileFileError(f"line {line}: {column}: '{raw}' is not true or false")
                    values[BOOLEAN_COLUMNS[column]] = raw.lower() in TRUE
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
