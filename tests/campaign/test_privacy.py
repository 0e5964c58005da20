"""Addresses are masked in logs and error texts."""

from __future__ import annotations

import logging

import pytest

from campaign.privacy import mask_address, mask_addresses


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("jane.doe@example.com", "j***@example.com"),
        ("+33612345678", "+336******78"),
        ("fcm-registration-token-0123456789", "fcm-***"),
        ("short", "***"),
    ],
)
def test_one_address_is_masked(address, masked):
    assert mask_address(address) == masked


def test_addresses_in_a_providers_answer_are_masked():
    answer = "550 5.1.1 <jane.doe@example.com>: unknown; also +15555550123 and ops@mail.example.org"
    masked = mask_addresses(answer)
    assert masked == "550 5.1.1 <j***@example.com>: unknown; also +155******23 and o***@mail.example.org"


def test_the_console_log_never_holds_a_full_address(console):
    logger = logging.getLogger("events.pipeline")
    logger.warning("could not reach %s", "jane.doe@example.com", extra={"reason": "bob@example.com is out"})
    try:
        raise ValueError("refused for jane.doe@example.com")
    except ValueError:
        logger.exception("send failed")
    text = console.getvalue()
    assert "could not reach j***@example.com" in text and "ValueError: refused for j***@example.com" in text
    assert "jane.doe@" not in text and "bob@" not in text
