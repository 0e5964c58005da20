"""What the event side hands a draft try (events.publication.recent_events): the last N events with
their joins made as the worker makes them, through the display data (selectors.ctx_for_display)."""

from __future__ import annotations

import copy

import pytest

from messages import draft_try, lifecycle
from tests.events.test_enrichment import CART, accept, cart, catalogue, items  # noqa: F401
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def test_recent_events_are_joined_as_the_worker_joins_them_newest_first(organization, catalogue, settings):  # noqa: F811
    settings.CELERY_TASK_ALWAYS_EAGER = True
    ProfileFactory(organization=organization, email="jane@example.com", first_name="Jane")
    configuration = cart(organization)
    accept(configuration, {"firstName": "Old", "items": items("SKU-1")})
    accept(configuration, {"firstName": "New", "customer": "jane@example.com", "items": items("SKU-2")})
    recent = lifecycle.event_side().recent_events(configuration.message, 5)
    assert [e.ctx["firstName"] for e in recent] == ["New", "Old"]
    assert recent[0].ctx["items"][0]["product"]["title"] == "Helmet"
    assert recent[0].joined_profile["firstName"] == "Jane" and not recent[0].skipped
    assert len(lifecycle.event_side().recent_events(configuration.message, 1)) == 1
    settled = draft_try.start(message=configuration.message, size=5)
    outputs = {side["name"]: side for side in settled.result["sides"]}["draft"]["outputs"]
    assert (
        "[Helmet] x 1" in dict(outputs[0]["parts"])["html"]
        and "Hello Jane" in dict(outputs[0]["parts"])["html"]
    )


def test_an_event_a_required_join_leaves_unsent_is_skipped_with_why(organization, catalogue):  # noqa: F811
    enrichments = copy.deepcopy(CART["enrichments"])
    enrichments[0]["required"] = True
    configuration = cart(organization, enrichments=enrichments)
    accept(configuration, {"firstName": "Jack", "items": items("SKU-404")})
    (event,) = lifecycle.event_side().recent_events(configuration.message, 5)
    assert "has no row 'SKU-404'" in event.skipped
