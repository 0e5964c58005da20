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


# --- The published configuration behind an endpoint, cached in the process ------------------------


def test_the_published_configuration_is_read_once_per_process_until_its_publication_changes(
    cart_configuration, django_assert_num_queries, settings
):
    from campaign import generations
    from events.publication import publish_configuration, unpublish_configuration

    settings.GENERATION_CHECK_SECONDS = 3600  # only this test's own moves re-read the generations
    ids = {"organization_id": cart_configuration.organization_id, "event_id": "EVTcartAbandonment"}
    first = selectors.cached_published_configuration(**ids)
    with django_assert_num_queries(0):
        assert selectors.cached_published_configuration(**ids) is first
    republished = publish_configuration(configuration=cart_configuration)
    again = selectors.cached_published_configuration(**ids)
    assert again.published_at == republished.published_at != first.published_at
    # Another process's move reaches this one with the generations' next check.
    generations.bump(selectors.CONFIGURATIONS)
    with django_assert_num_queries(0):
        assert selectors.cached_published_configuration(**ids) is again  # not checked yet
    settings.GENERATION_CHECK_SECONDS = 0
    with django_assert_num_queries(2):  # the generations, then the configuration
        assert selectors.cached_published_configuration(**ids) is not again
    unpublish_configuration(configuration=cart_configuration)
    assert selectors.cached_published_configuration(**ids) is None


def test_an_unknown_event_id_is_not_remembered(organization, django_assert_num_queries, settings):
    settings.GENERATION_CHECK_SECONDS = 3600
    ids = {"organization_id": organization.pk, "event_id": "EVTnothing"}
    assert selectors.cached_published_configuration(**ids) is None
    with django_assert_num_queries(1):  # looked up again: a flood of made-up ids fills no memory
        assert selectors.cached_published_configuration(**ids) is None
