"""The event API's renderer (orjson) writes what DRF's JSONRenderer wrote, byte for byte."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.exceptions import ErrorDetail
from rest_framework.renderers import JSONRenderer

from events.api.renderers import OrjsonRenderer

VALUES = [
    Decimal("125.50"),
    Decimal("1E+2"),
    Decimal("0.0000001"),
    Decimal("123456789012345678901234567.890"),
    dt.datetime(2017, 12, 1, 8, 0, 0, 768000, tzinfo=dt.UTC),
    dt.datetime(2017, 12, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.date(2017, 12, 1),
    'Jack é € \u2028 \u2029 </script> \x00 \x1f \x7f \t " \\ /',
    gettext_lazy("Not found."),
    ErrorDetail("ctx.firstName: must be a string", code="invalid"),
    2**63 - 1,
    -(2**63),
    123456789012345678901234567890,  # a decimal field's 30 digits, beyond orjson's 64 bits
    None,
    True,
    {"nested": [{"sku": "LB-1", "price": 99.5}]},
    {1: "a key that is not a string"},
]
# Every magnitude: Python and orjson write floats below 1e-4 differently (DRF's renderer takes those).
FLOATS = [
    sign * digits * 10.0**exponent
    for sign in (1, -1)
    for digits in (1, 1.5, 1 / 3)
    for exponent in range(-25, 25)
]


@pytest.mark.parametrize("value", VALUES + FLOATS + [0.0, -0.0, 5e-324, 1.7976931348623157e308])
def test_the_answer_is_byte_for_byte_what_drf_wrote(value):
    data = {"PKey": "x", "value": value, "list": [value]}
    assert OrjsonRenderer().render(data) == JSONRenderer().render(data)


def test_no_data_is_an_empty_body():
    assert OrjsonRenderer().render(None) == b""
