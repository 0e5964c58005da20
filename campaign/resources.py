"""Custom resources: an organization's lookup tables (a product catalogue), imported from CSV whole,
all or nothing (`import_resource ORG NAME FILE.csv --key sku`): a new import replaces every row.

Bounded: the file's size, its rows, its columns, each name and each value (campaign.bounds).
"""

from __future__ import annotations

import csv
import io
import re
from typing import TextIO

from django.db import transaction

from campaign import bounds
from campaign.models import CustomResource, CustomResourceRow, Organization

MAX_BYTES = 10 * 1024 * 1024  # the file, in characters read (UTF-8 text)
MAX_ROWS = 100_000
MAX_COLUMNS = 50
KEY_MAX_LENGTH = CustomResourceRow._meta.get_field("key").max_length or 255
COLUMN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
INSERT_BATCH = 1_000


class ResourceFileError(Exception):
    """One line that says where the file is wrong (line and column)."""


def resource_name_problem(name: str) -> str | None:
    if not COLUMN_NAME.match(name or ""):
        return (
            f"'{name[:80]}' is not a resource name "
            "(letters, digits and '_', starting with a letter, at most 64)"
        )
    return None


def import_resource_csv(*, organization: Organization, name: str, key: str, handle: TextIO) -> CustomResource:
    """Read the whole file, check it, then replace the resource's rows in one transaction."""
    problem = resource_name_problem(name)
    if problem:
        raise ResourceFileError(f"NAME: {problem}")
    text = handle.read(MAX_BYTES + 1)
    if len(text) > MAX_BYTES:
        raise ResourceFileError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise ResourceFileError("the file is empty: it needs a header row of column names")
        header = [column.strip() for column in header]
        if len(header) > MAX_COLUMNS:
            raise ResourceFileError(f"line 1: {len(header)} columns; at most {MAX_COLUMNS}")
        for column in header:
            if not COLUMN_NAME.match(column):
                raise ResourceFileError(
                    f"line 1: '{column[:80]}' is not a column name (letters, digits and '_', starting "
                    "with a letter, at most 64)"
                )
        if len(set(header)) != len(header):
            twice = next(c for c in header if header.count(c) > 1)
            raise ResourceFileError(f"line 1: the column '{twice}' is there twice")
        if key not in header:
            raise ResourceFileError(f"--key: the header has no column '{key[:80]}' ({', '.join(header)})")
        key_index = header.index(key)
        rows: dict[str, dict[str, str]] = {}
        for values in reader:
            line = reader.line_num
            if not values:
                continue  # a blank line
            if len(rows) >= MAX_ROWS:
                raise ResourceFileError(f"line {line}: more than {MAX_ROWS} rows")
            if len(values) != len(header):
                raise ResourceFileError(f"line {line}: {len(values)} values for {len(header)} columns")
            for column, value in zip(header, values, strict=True):
                problem = bounds.text_problem(value)
                if problem:
                    raise ResourceFileError(f"line {line}: {column}: {problem}")
            row_key = values[key_index].strip()
            if not row_key:
                raise ResourceFileError(f"line {line}: {key}: the key is empty")
            if len(row_key) > KEY_MAX_LENGTH:
                raise ResourceFileError(f"line {line}: {key}: a key has at most {KEY_MAX_LENGTH} characters")
            if row_key in rows:
                raise ResourceFileError(f"line {line}: {key}: the key '{row_key[:80]}' is there twice")
            rows[row_key] = dict(zip(header, values, strict=True))
    except csv.Error as error:
        raise ResourceFileError(f"line {reader.line_num}: {error}") from None
    with transaction.atomic():
        resource, _ = CustomResource.objects.select_for_update().get_or_create(
            organization=organization, name=name, defaults={"key_column": key}
        )
        resource.key_column, resource.columns, resource.row_count = key, header, len(rows)
        resource.save()
        resource.rows.all().delete()
        CustomResourceRow.objects.bulk_create(
            (CustomResourceRow(resource=resource, key=k, data=data) for k, data in rows.items()),
            batch_size=INSERT_BATCH,
        )
    return resource
