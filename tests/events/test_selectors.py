"""Reads of processing: the quarantine of a batch's addresses, the profile an event targets."""

from __future__ import annotations

import pytest

from campaign.models import Quarantine
from events import selectors
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


def test_a_batchs_addresses_are_checked_against_the_quarantine_in_one_query(
    organization, django_assert_num_queries
):
    other = OrganizationFactory(slug="acme")
    Quarantine.objects.create(organization=organization, channel="email", address="bounced@example.com")
    Quarantine.objects.create(organization=other, channel="email", address="fine@example.com")
    with django_assert_num_queries(1):
        lookup = selectors.QuarantineLookup.for_addresses(
            [
                (organization.pk, "email", "Bounced@Example.com"),
                (organization.pk, "email", "fine@example.com"),
            ]
        )
    with django_assert_num_queries(0):
        assert lookup(organization_id=organization.pk, channel="email", address="BOUNCED@example.com")
        assert not lookup(organization_id=organization.pk, channel="email", address="fine@example.com")
    with django_assert_num_queries(1):  # an address the batch did not carry (a profile's)
        assert lookup(organization_id=other.pk, channel="email", address="fine@example.com")


def test_an_address_quarantined_during_the_batch_is_seen_by_its_next_events(organization):
    lookup = selectors.QuarantineLookup.for_addresses([(organization.pk, "email", "new@example.com")])
    assert not lookup(organization_id=organization.pk, channel="email", address="new@example.com")
    lookup.add(organization_id=organization.pk, channel="email", address="New@example.com")
    assert lookup(organization_id=organization.pk, channel="email", address="new@example.com")
