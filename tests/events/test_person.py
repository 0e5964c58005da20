"""A person's data on request: `export_person ORG EMAIL` prints all of it as JSON, `forget ORG EMAIL`
and the profiles' admin action erase it (profile, events, deliveries), and nothing of anyone else."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from campaign.models import Profile, Quarantine
from events import pipeline
from events.models import Event, EventStatusChange
from events.schema import validate_event
from events.services import ingest
from messages import sms_replies
from messages.models import Delivery, SmsReceipt
from tests.cli import assert_bad_input
from tests.conftest import CART_EVENT, publish_events, seed_body
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")
JANE = "Jane.Doe@example.com"


def sent(configuration, email: str, **ctx) -> Event:
    body = seed_body(scheduled=None, expiration=FUTURE, email=email)
    body["ctx"] = {**body["ctx"], **ctx}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    assert pipeline.process(event.pk) == "processed"
    return event


@pytest.fixture
def people(cart_configuration, organization, other_organization):
    """Jane (a profile, two events, one under another case of her address, a quarantine entry),
    John in the same organization, and Jane's address in another organization."""
    jane = ProfileFactory(organization=organization, email="jane.doe@example.com", first_name="Jane")
    mine = [
        sent(cart_configuration, JANE, firstName="Jane"),
        sent(cart_configuration, "JANE.DOE@example.com"),
    ]
    Quarantine.objects.create(organization=organization, channel="email", address="jane.doe@example.com")
    john = sent(cart_configuration, "john@example.com", firstName="John")
    other_configuration = publish_events(
        other_organization, {**copy.deepcopy(CART_EVENT), "name": "acmeCart"}
    )[0]
    elsewhere = sent(other_configuration, JANE)
    return {"jane": jane, "mine": mine, "john": john, "elsewhere": elsewhere}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_export_person_prints_everything_kept_about_them(organization, people):
    data = json.loads(run("export_person", "geometrixx", JANE))
    assert data["organization"] == "geometrixx" and data["profile"]["firstName"] == "Jane"
    assert {e["PKey"] for e in data["events"]} == {e.pkey for e in people["mine"]}
    first = next(e for e in data["events"] if e["PKey"] == people["mine"][0].pkey)
    assert first["ctx"]["firstName"] == "Jane" and [(h["to"], h["code"]) for h in first["history"]] == [
        ("processing", "claimed"),
        ("processed", "sent"),
    ]
    assert len(data["deliveries"]) == 2
    assert all(d["content"]["subject"].endswith("your cart is waiting") for d in data["deliveries"])
    assert data["quarantine"] == [
        {
            "channel": "email",
            "address": "jane.doe@example.com",
            "reason": "",
            "created": data["quarantine"][0]["created"],
        }
    ]
    assert data["tracking"] == []  # none yet: see test_forget_takes_the_opens_and_clicks...
    assert "john@example.com" not in json.dumps(data)


def test_forget_erases_the_person_and_nothing_else(organization, people):
    out = run("forget", "geometrixx", JANE)
    assert "events.Event: 2 deleted" in out.splitlines() and "campaign.Profile: 1 deleted" in out.splitlines()
    assert not Profile.objects.filter(pk=people["jane"].pk).exists()
    assert not Event.objects.filter(pk__in=[e.pk for e in people["mine"]]).exists()
    assert not EventStatusChange.objects.filter(event_id__in=[e.pk for e in people["mine"]]).exists()
    assert not Delivery.objects.filter(organization=organization, recipient__iexact=JANE).exists()
    # John, and Jane's events in another organization, stay; so does the quarantine of her address.
    assert people["john"].deliveries.count() == 1 and Event.objects.filter(pk=people["elsewhere"].pk).exists()
    assert Quarantine.objects.filter(organization=organization, address="jane.doe@example.com").exists()
    assert json.loads(run("export_person", "geometrixx", JANE))["events"] == []
    assert run("forget", "geometrixx", JANE).strip() == f"Nothing kept about {JANE} in geometrixx."


def test_forget_takes_the_proofs_sent_to_the_address_too(organization, cart_configuration, people):
    Delivery.objects.create(
        organization=organization, message=cart_configuration.message, is_proof=True, channel="email",
        recipient="jane.doe@example.com", outcome="sent",
    )  # fmt: skip
    run("forget", "geometrixx", JANE)
    assert not Delivery.objects.filter(recipient__iexact=JANE).exclude(organization__slug="acme").exists()


def test_the_admin_action_asks_then_forgets(client, administrator, people):
    url = reverse("admin:campaign_profile_changelist")
    client.force_login(administrator)
    selected = {"action": "forget_people", "_selected_action": [people["jane"].pk]}
    asked = client.post(url, selected)
    assert asked.status_code == 200 and "jane.doe@example.com" in asked.content.decode().lower()
    assert Profile.objects.filter(pk=people["jane"].pk).exists()  # nothing erased before the answer
    done = client.post(url, {**selected, "confirm": "yes"}, follow=True)
    assert "jane.doe@example.com forgotten: " in done.content.decode().lower()
    assert not Profile.objects.filter(pk=people["jane"].pk).exists()
    assert not Event.objects.filter(pk__in=[e.pk for e in people["mine"]]).exists()
    assert Event.objects.filter(pk=people["john"].pk).exists()


def test_a_marketer_cannot_forget_anyone(client, marketer, people):
    client.force_login(marketer)
    page = client.get(reverse("admin:campaign_profile_changelist"))
    assert "forget_people" not in page.content.decode()
    client.post(
        reverse("admin:campaign_profile_changelist"),
        {"action": "forget_people", "_selected_action": [people["jane"].pk], "confirm": "yes"},
    )
    assert Profile.objects.filter(pk=people["jane"].pk).exists()


@pytest.mark.parametrize(
    "args",
    [
        ["forget", "nosuchorg", "a@example.com"],
        ["forget", "geometrixx", "not-an-address"],
        ["forget", "geometrixx", "a" * 300 + "@example.com"],
        ["export_person", "nosuchorg", "a@example.com"],
        ["export_person", "geometrixx", "@"],
        ["forget", "geometrixx"],
        ["purge", "--dry-runs"],
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(cli, args):
    result = cli.run(*args)
    assert_bad_input(result)
    assert result.stdout == ""


def test_the_commands_as_a_script_runs_them(cli):
    assert cli.run("forget", "geometrixx", "nobody@example.com").stdout.strip() == (
        "Nothing kept about nobody@example.com in geometrixx."
    )
    exported = cli.run("export_person", "geometrixx", "nobody@example.com")
    assert exported.returncode == 0 and json.loads(exported.stdout)["profile"] is None
    dry = cli.run("purge", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.splitlines() == [
        "events.Event: 0 to delete",
        "transactional.Delivery: 0 to delete",
        "transactional.TrackingHit: 0 to delete",
        "transactional.DraftTry: 0 to delete",
    ]


def test_forget_takes_the_opens_and_clicks_and_export_shows_them(organization, people):
    from messages.models import TrackingHit

    delivery = people["mine"][0].deliveries.get()
    TrackingHit.objects.create(
        organization=organization, delivery=delivery, message_id=delivery.message_id, kind="click",
        url="https://shop.example.com/cart", user_agent="Mozilla/5.0",
    )  # fmt: skip
    other = people["john"].deliveries.get()
    kept = TrackingHit.objects.create(
        organization=organization, delivery=other, message_id=other.message_id, kind="open"
    )
    (click,) = json.loads(run("export_person", "geometrixx", JANE))["tracking"]
    assert click["kind"] == "click" and click["url"] == "https://shop.example.com/cart"
    out = run("forget", "geometrixx", JANE)
    assert "transactional.TrackingHit: 1 deleted" in out.splitlines()
    assert list(TrackingHit.objects.all()) == [kept]


def test_forgetting_a_person_keeps_the_reports_counts(organization, people, settings):
    from events import rollups
    from events.models import RollupProgress
    from tests.events.test_rollups import totals

    rollups.refresh()
    before = totals()
    run("forget", "geometrixx", JANE)
    rollups.refresh()
    assert totals() == before
    RollupProgress.objects.update(last_run_at=None)
    rollups.refresh()
    assert totals() == before


def test_export_shows_an_sms_receipt_with_its_code_and_forget_erases_it(organization, cart_configuration):
    """The receipts of the person's SMS deliveries, also one that came before its delivery was written."""
    jane = ProfileFactory(
        organization=organization, email="jane.doe@example.com", mobile_phone="+33612345678"
    )

    def sms(message_id: str) -> Delivery:
        return Delivery.objects.create(
            organization=organization,
            message=cart_configuration.message,
            channel="sms",
            recipient=jane.mobile_phone,
            outcome="sent",
            provider_message_id=message_id,
        )

    joined = sms("SM1")
    sms_replies.record_receipt(provider="twilio", message_id="SM1", status="undelivered", error_code="30005")
    sms_replies.record_receipt(provider="twilio", message_id="SM2", status="delivered")  # before its delivery
    sms("SM2")
    exported = json.loads(run("export_person", "geometrixx", JANE))["deliveries"]
    told = {d["providerMessageId"]: d["providerEvents"] for d in exported}
    assert [(t["kind"], t["provider"], t["status"], t["errorCode"]) for t in told["SM1"]] == [
        ("failed", "twilio", "undelivered", "30005")
    ]
    assert [t["status"] for t in told["SM2"]] == ["delivered"]
    assert joined.sms_receipts.count() == 1
    run("forget", "geometrixx", JANE)
    assert not SmsReceipt.objects.exists() and not Delivery.objects.exists()
