"""End to end, sensitive fields: the real web (gunicorn) and worker (Celery on Redis) with JSON logs,
SMTP on loopback. The value arrives in the email; it is in no API answer, no log line of either
process, and not in the stored row."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.utils import timezone

from campaign.resources import import_resource_csv
from events.models import Event
from tests.conftest import publish_events
from tests.e2e.stack import http, stack_processes_for, wait_until
from tests.smtp import free_port

pytestmark = [pytest.mark.e2e]
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.768Z")
SECRET = "4929-3813-3266-4295"
PIN = "PIN-31337"
MISSING_PIN = "PIN-40404"
URL = "/geometrixx/campaign/mcgeometrixx/EVTcardIssued"

CARD_EVENT = {
    "name": "cardIssued",
    "channel": "email",
    "targeting": "event",
    "fields": [
        {"name": "firstName", "type": "text"},
        {"name": "cardNumber", "type": "text", "sensitive": True, "maxLength": 19},
    ],
    "collections": [
        {
            "name": "cards",
            "fields": [{"name": "label", "type": "text"}, {"name": "pin", "type": "text", "sensitive": True}],
        }
    ],
    "enrichments": [
        {"kind": "resource", "collection": "cards", "field": "pin", "resource": "card", "required": True}
    ],
    "message": {
        "subject": "{{ ctx.firstName }}, your card",
        "html": "<p>Card {{ ctx.cardNumber }}</p>"
        "{% for c in ctx.cards %}<p>{{ c.card.title }}: {{ c.pin }}</p>{% endfor %}",
        "text": "Card {{ ctx.cardNumber }}"
        "{% for c in ctx.cards %} {{ c.card.title }}: {{ c.pin }}{% endfor %}",
    },
}


@pytest.fixture(scope="module")
def stack_processes(django_db_setup, django_db_blocker, smtp, tmp_path_factory):
    """The stack of tests/e2e/conftest.py, its logs in JSON at DEBUG, and keys of its own."""
    log_dir = tmp_path_factory.mktemp("sensitive-stack")
    port = free_port()
    yield from stack_processes_for(
        django_db_blocker,
        smtp_port=smtp.port,
        log_dir=log_dir,
        web_port=port,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        LOG_FORMAT="json",
        LOG_LEVEL="DEBUG",
        ENCRYPTION_KEYS=Fernet.generate_key().decode(),
    )


def final_status(stack, headers, pkey) -> str:
    seen = {}

    def done():
        status, answer = http("GET", f"{stack.base_url}{URL}/{pkey}", headers=headers)
        seen["answer"] = answer
        return status == 200 and answer.get("status") not in ("pending", "processing")

    wait_until(done, timeout=30, what=f"event {pkey} to end", process=stack.worker)
    return seen["answer"]["status"]


def test_a_sensitive_value_is_in_the_email_and_nowhere_else(stack, stack_processes, geometrixx):
    import_resource_csv(
        organization=geometrixx, name="card", key="pin", handle=io.StringIO(f"pin,title\n{PIN},Gold card\n")
    )
    publish_events(geometrixx, copy.deepcopy(CARD_EVENT))
    headers = stack.token_headers(geometrixx)
    answers: list[str] = []

    def post(pin: str) -> str:
        body = {
            "email": "jane@example.com",
            "expiration": FUTURE,
            "ctx": {"firstName": "Jane", "cardNumber": SECRET, "cards": [{"label": "main", "pin": pin}]},
        }
        status, answer = http("POST", f"{stack.base_url}{URL}", body=body, headers=headers)
        assert status == 201, answer
        answers.append(json.dumps(answer))
        assert answer["ctx"]["cardNumber"] == "***" and answer["ctx"]["cards"][0]["pin"] == "***"
        return answer["PKey"]

    sent, failed = post(PIN), post(MISSING_PIN)
    assert final_status(stack, headers, sent) == "processed"
    assert final_status(stack, headers, failed) == "targetingFailed"  # its reason names the key, masked

    (received,) = stack.mailbox.wait_for(1)
    assert f"Card {SECRET}" in received.part("text/plain")
    assert f"Gold card: {PIN}" in received.part("text/plain") and SECRET in received.part("text/html")

    for path in (f"{URL}/{sent}", f"{URL}/{failed}", URL):
        status, answer = http("GET", f"{stack.base_url}{path}", headers=headers)
        assert status == 200
        answers.append(json.dumps(answer))
    for answer in answers:
        assert SECRET not in answer and PIN not in answer and MISSING_PIN not in answer
    assert '"***"' in answers[-1]

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Event._meta.db_table}")
        stored = repr(cursor.fetchall())
    assert SECRET not in stored and PIN not in stored and MISSING_PIN not in stored
    event = Event.objects.get(pkey=failed)
    assert "has no row '***'" in event.last_error or "has no row '***'" in str(
        list(event.status_changes.values_list("reason", flat=True))
    )

    _, log_dir, _, web, worker = stack_processes
    logs = {"web": web.output(tail=None), "worker": worker.output(tail=None)}
    assert sent in logs["web"] and sent in logs["worker"]  # the logs are those of these events
    assert "targetingFailed" in logs["worker"]
    for name, text in logs.items():
        lines = [line for line in text.splitlines() if line.startswith("{")]
        assert lines, name  # JSON lines
        for line in text.splitlines():
            assert SECRET not in line and PIN not in line and MISSING_PIN not in line, (name, line)
