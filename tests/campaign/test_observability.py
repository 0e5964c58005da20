"""Health probes, the Prometheus metrics, and logs that carry the event's PKey and organization."""

import json
import logging

import pytest

from events import pipeline
from events.models import Event
from tests.conftest import CART_URL, seed_body

pytestmark = pytest.mark.django_db


def test_healthz_answers_while_the_process_lives(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_broker_is_unreachable(client, monkeypatch):
    from campaign.celery import app

    def unreachable(*args, **kwargs):
        raise ConnectionRefusedError("no broker")

    monkeypatch.setattr(app, "connection_for_write", unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")


def metric(text: str, name: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}}" if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def scraper(client, settings):
    settings.METRICS_TOKEN = "scraper-token"
    client.defaults["HTTP_AUTHORIZATION"] = "Bearer scraper-token"
    return client


def test_metrics_count_events_latency_deliveries_and_queue(scraper, api, cart_configuration):
    client = scraper
    before = client.get("/metrics").content.decode()
    body = seed_body(scheduled=None, expiration="2999-01-01 00:00:00Z")
    pkeys = [
        api.post(CART_URL, data=json.dumps(body), content_type="application/json").json()["PKey"]
        for _ in range(2)
    ]
    text = client.get("/metrics").content.decode()
    assert metric(text, "transactional_queue_depth") == 2
    assert metric(text, "transactional_events", event_id="EVTcartAbandonment", status="pending") == 2
    received = "transactional_events_received_total"
    assert (
        metric(text, received, event_id="EVTcartAbandonment")
        - metric(before, received, event_id="EVTcartAbandonment")
        == 2
    )
    for pkey in pkeys:
        pipeline.process(Event.objects.get(pkey=pkey).pk)
    text = client.get("/metrics").content.decode()
    assert metric(text, "transactional_queue_depth") == 0
    assert metric(text, "transactional_events", event_id="EVTcartAbandonment", status="processed") == 2
    sent = "transactional_deliveries_total"
    assert (
        metric(text, sent, channel="email", outcome="sent")
        - metric(before, sent, channel="email", outcome="sent")
        == 2
    )
    count = "transactional_event_latency_seconds_count"
    assert metric(text, count, status="processed") - metric(before, count, status="processed") == 2


def test_metrics_can_require_a_token(client, settings, db):
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_without_a_metrics_token_production_shows_no_metrics(client, settings, db):
    settings.METRICS_TOKEN, settings.DEBUG = "", False
    answer = client.get("/metrics")
    assert answer.status_code == 403 and b"METRICS_TOKEN" in answer.content
    assert b"transactional_events" not in answer.content
    settings.DEBUG = True  # a development server shows them
    assert b"transactional_queue_depth" in client.get("/metrics").content


def test_the_metrics_server_listens_on_loopback_unless_told_otherwise(monkeypatch):
    from django.core.management import call_command

    from campaign.management.commands import metrics_server

    bound = {}

    class Stop(Exception):
        pass

    def fake_start(port, addr, registry):
        bound.update(port=port, addr=addr)
        raise Stop

    monkeypatch.setattr(metrics_server, "start_http_server", fake_start)
    with pytest.raises(Stop):
        call_command("metrics_server")
    assert bound == {"port": 9100, "addr": "127.0.0.1"}


def test_logs_of_the_worker_and_the_web_carry_pkey_and_organization(api, cart_configuration, caplog):
    from campaign.log_context import EventContextFilter

    caplog.handler.addFilter(EventContextFilter())
    with caplog.at_level(logging.INFO):
        body = seed_body(scheduled=None, expiration="2999-01-01 00:00:00Z")
        pkey = api.post(CART_URL, data=json.dumps(body), content_type="application/json").json()["PKey"]
        pipeline.process(Event.objects.get(pkey=pkey).pk)
    records = [r for r in caplog.records if getattr(r, "pkey", "-") == pkey]
    assert {r.name for r in records} >= {"events.api.views", "events.pipeline"}
    assert all(r.organization == "geometrixx" for r in records)


def test_json_log_format_is_parseable_and_has_the_context(settings):
    from django.utils.module_loading import import_string

    from campaign.log_context import EventContextFilter, event_context

    configured = settings.LOGGING["formatters"]["json"]

    record = logging.LogRecord(
        "events.pipeline", logging.INFO, __file__, 1, "event %s -> %s", ("K", "processed"), None
    )
    with event_context(pkey="K", organization="geometrixx"):
        EventContextFilter().filter(record)
    line = import_string(configured["()"])(configured["format"]).format(record)
    parsed = json.loads(line)
    assert parsed["pkey"] == "K" and parsed["organization"] == "geometrixx"
    assert parsed["message"] == "event K -> processed"
