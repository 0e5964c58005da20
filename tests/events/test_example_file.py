"""examples/events.json: the README's sample and the demo's seed are this one file, and it works as
the README says (a required first name, a French variant chosen by AC_language, a Reply-To)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.core import mail

from events import pipeline
from events.models import Event
from tests.conftest import CART_URL, publish_events

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((ROOT / "examples" / "events.json").read_text())
BODY = {"email": "jack@example.com", "ctx": {"firstName": "Jack", "lastProduct": "Leather motorbike jacket"}}


def readme_sample() -> dict:
    section = (ROOT / "README.md").read_text().split("## Event configuration file", 1)[1]
    return json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))


def test_the_readmes_sample_is_the_example_file():
    assert readme_sample() == EXAMPLE


@pytest.fixture
def example_api(organization, api):
    publish_events(organization, *EXAMPLE["events"])
    return api


def send(api, body) -> mail.EmailMessage:
    answer = api.post(CART_URL, body, format="json")
    assert answer.status_code == 201, answer.json()
    assert pipeline.process(Event.objects.get(pkey=answer.json()["PKey"]).pk) == "processed"
    (sent,) = mail.outbox
    return sent


@pytest.mark.django_db
def test_an_event_without_a_first_name_is_refused_naming_it(example_api):
    answer = example_api.post(CART_URL, {"email": "jack@example.com", "ctx": {}}, format="json")
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "ctx.firstName"
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_the_default_content_reads_well_without_the_optional_amount(example_api):
    sent = send(example_api, BODY)
    assert sent.subject == "Jack, your cart is waiting"
    assert "Hello Jack, you left Leather motorbike jacket in your cart." in sent.body
    assert sent.from_email == "Geometrixx <shop@geometrixx.example>"
    assert sent.reply_to == ["help@geometrixx.example"]


@pytest.mark.django_db
def test_ac_language_chooses_the_french_variant(example_api):
    body = {**BODY, "ctx": {**BODY["ctx"], "AC_language": "fr", "cartAmount": "125 €"}}
    sent = send(example_api, body)
    assert sent.subject == "Jack, votre panier vous attend"
    assert "Bonjour Jack, vous avez laissé Leather motorbike jacket dans votre panier (125 €)." in sent.body
    assert sent.reply_to == ["help@geometrixx.example"]
