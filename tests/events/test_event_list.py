"""The latest events in the admin: the reason of each, a search inside the events' data (ctx), and
the CSV export of the list's filter, all within the caller's organization."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from campaign.csv_export import safe_cell  # a PKey may start with "-": exported defused
from events.models import Event
from events.schema import validate_event
from events.services import ingest
from events.transitions import transition
from tests.conftest import CART_EVENT, publish_events, seed_body

pytestmark = pytest.mark.django_db
EVENTS = reverse("admin:events_event_changelist")
EXPORT = reverse("admin:events_event_export")
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def accept(configuration, **ctx) -> Event:
    body = seed_body(scheduled=None, expiration=FUTURE)
    body["ctx"] = {**body["ctx"], **ctx}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def listed(client, **params) -> list[str]:
    page = client.get(EVENTS, params)
    assert page.status_code == 200
    return re.findall(r'<th class="field-pkey"><a href="[^"]*">([^<]+)</a>', page.content.decode())


def exported(client, **params) -> list[dict[str, str]]:
    response = client.get(EXPORT, params)
    assert response.status_code == 200 and response.streaming
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def other_event(other_organization):
    configuration = publish_events(other_organization, {**copy.deepcopy(CART_EVENT), "name": "acmeCart"})[0]
    return accept(configuration, firstName="Jack", lastProduct="Acme secret")


def test_the_list_shows_why_an_event_failed(client, marketer, cart_configuration):
    failed = accept(cart_configuration)
    transition(failed.pk, to="processing", sources=["pending"])
    transition(failed.pk, to="targetingFailed", sources=["processing"], reason="no profile matches the event")
    client.force_login(marketer)
    page = client.get(EVENTS).content.decode()
    assert re.search(r'<td class="field-reason">no profile matches the event</td>', page)


def test_search_inside_ctx_by_text_and_by_key(client, marketer, cart_configuration, other_event):
    jacket = accept(cart_configuration, lastProduct="Leather jacket", firstName="Jack")
    boots = accept(cart_configuration, lastProduct="Riding boots", firstName="Jackie")
    client.force_login(marketer)
    assert listed(client, q="ctx:riding") == [boots.pkey]
    assert set(listed(client, q="ctx:jack")) == {jacket.pkey, boots.pkey}  # never the other organization's
    assert listed(client, q="ctx:firstName=jack") == [jacket.pkey]  # the whole value, any case
    assert listed(client, q="ctx:lastProduct=Acme secret") == []
    assert listed(client, q="ctx:") != []  # an empty search is no filter
    assert listed(client, q="ctx:" + "x" * 5000) == []  # bounded, not an error


def test_search_by_a_nested_key(client, marketer, organization):
    event = {**copy.deepcopy(CART_EVENT), "name": "nested"}
    event["fields"] = [*event["fields"], {"name": "orderId", "type": "text"}]
    configuration = publish_events(organization, event)[0]
    first = accept(configuration, products=[{"sku": "A-1", "price": 3}], orderId="42")
    accept(configuration, orderId="43")
    client.force_login(marketer)
    assert listed(client, q="ctx:orderId=42") == [first.pkey]
    assert listed(client, q="ctx:A-1") == [first.pkey]


def test_the_csv_export_follows_the_search_and_escapes_formulas(
    client, marketer, cart_configuration, other_event
):
    wanted = accept(cart_configuration, firstName="=cmd|' /C calc'!A0", lastProduct="Helmet")
    accept(cart_configuration, lastProduct="Gloves")
    client.force_login(marketer)
    (row,) = exported(client, q="ctx:helmet")
    assert (
        row["PKey"] == safe_cell(wanted.pkey)
        and row["eventId"] == "EVTcartAbandonment"
        and row["status"] == "pending"
    )
    assert "=cmd" in row["ctx"] and row["ctx"].startswith("{")  # the ctx as JSON
    (defused,) = exported(client, q=wanted.pkey)
    assert defused["PKey"] == safe_cell(wanted.pkey)
    every = exported(client)
    assert len(every) == 2 and safe_cell(other_event.pkey) not in {r["PKey"] for r in every}


def test_an_exported_cell_that_a_spreadsheet_would_run_is_defused():
    from campaign.csv_export import safe_cell

    assert [safe_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "plain", None, 3)] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "plain", "", "3",
    ]  # fmt: skip


def test_the_export_is_the_own_organizations_even_with_a_filter_naming_another(
    client, marketer, cart_configuration, other_event
):
    accept(cart_configuration)
    client.force_login(marketer)
    rows = exported(client, configuration__id__exact=other_event.configuration_id)
    assert safe_cell(other_event.pkey) not in {row["PKey"] for row in rows}
