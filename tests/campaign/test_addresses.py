"""Domains, addresses and phones in the form the sender and proof rules compare them."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaign import addresses


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Geometrixx.Example", "geometrixx.example"),
        ("  mail.example.com. ", "mail.example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_a_domain_is_stored_lower_case_in_its_ascii_form(typed, stored):
    assert addresses.normalise_domain(typed) == stored


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "Enter a domain name"),
        ("localhost", "not a full domain name"),
        ("shop@paypal.com", "is an address, not a domain"),
        ("exa_mple.com", "not a valid domain name"),
        ("-bad.example.com", "not a valid domain name"),
        ("a..example.com", "not a valid domain name"),
        ("ex ample.com", "not a valid domain name"),
        ("x" * 64 + ".example.com", "not a valid domain name"),
        (".".join(["abcdefghi"] * 26) + ".com", "at most 253 characters"),
        ("x" * 5000, "at most 253 characters"),
    ],
)
def test_a_bad_domain_is_refused_saying_why(typed, reason):
    with pytest.raises(ValidationError) as refused:
        addresses.normalise_domain(typed)
    assert reason in " ".join(refused.value.messages)


def test_an_address_domain_compares_with_either_form_of_an_international_domain():
    assert addresses.domain_of("Shop@Bücher.Example") == "xn--bcher-kva.example"
    assert addresses.normalise_email("QA@Bücher.example") == "qa@xn--bcher-kva.example"
    assert addresses.domain_of("no-at-sign") == ""


def test_phones_are_read_as_the_api_reads_them():
    assert addresses.phone_number("+33 6 12 34 56 78") == "+33612345678"
    with pytest.raises(ValueError, match="not a phone number"):
        addresses.phone_number("abc")
