"""The database goes away under a running web server and worker (a TCP proxy between them and
PostgreSQL is cut, then reopened): the API answers 503 in its JSON shape and stores nothing
during the cut, and everything recovers by itself afterwards, with nothing restarted."""

from __future__ import annotations

import copy
import datetime as dt
import json
import urllib.error
import urllib.request

import pytest
from django.db import connection
from django.utils import timezone

from events.models import Event
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.proxy import TcpProxy
from tests.e2e.stack import flush_broker, http, stack_environment, start_web, start_worker, wait_until

pytestmark = [pytest.mark.e2e]
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


def raw_http(method: str, url: str, *, body: dict | None, headers: dict) -> tuple[int, dict, dict]:
    """Status, headers and JSON body, whatever the status (the body must be JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture
def stack_behind_a_proxy(transactional_db, smtp_server, tmp_path):
    settings = connection.settings_dict
    if not settings["ENGINE"].endswith("postgresql"):
        pytest.skip("a database connection to cut needs PostgreSQL (make test-postgres runs this)")
    proxy = TcpProxy(settings.get("HOST") or "127.0.0.1", int(settings.get("PORT") or 5432))
    user = settings.get("USER") or "postgres"
    env = stack_environment(
        smtp_port=smtp_server.port,
        var_dir=tmp_path,
        DATABASE_URL=f"postgres://{user}@127.0.0.1:{proxy.port}/{settings['NAME']}",
        DB_CONN_MAX_AGE="60",  # persistent connections: the cut kills them under the processes
    )
    flush_broker()
    web, base_url = start_web(env, tmp_path)
    worker = start_worker(env, tmp_path)
    yield proxy, base_url, web, worker, smtp_server.mailbox
    worker.stop()
    web.stop()
    proxy.close()


def test_a_cut_database_answers_503_json_then_everything_recovers_by_itself(
    stack_behind_a_proxy, organization
):
    proxy, base_url, web, worker, mailbox = stack_behind_a_proxy
    publish_events(organization, copy.deepcopy(CART_EVENT))
    from campaign import services as campaign_services

    issued = campaign_services.create_api_credential(organization=organization)
    token_form = {
        "grant_type": "client_credentials",
        "client_id": issued.credential.api_key,
        "client_secret": issued.client_secret,
    }
    status, answer = http("POST", f"{base_url}/ims/token/v3", form=token_form)
    assert status == 200, answer
    headers = {"Authorization": f"Bearer {answer['access_token']}", "X-Api-Key": issued.credential.api_key}
    url = f"{base_url}{CART_URL}"

    def body(name: str) -> dict:
        return {
            **copy.deepcopy(SEED_BODY),
            "expiration": FUTURE,
            "ctx": {**SEED_BODY["ctx"], "firstName": name},
        }

    accepted = []
    for name in ("Before1", "Before2"):
        status, _, answer = raw_http("POST", url, body=body(name), headers=headers)
        assert status == 201, answer
        accepted.append(answer["PKey"])
    stored_before_cut = Event.objects.count()

    proxy.cut()
    for attempt in range(3):
        status, response_headers, answer = raw_http(
            "POST", url, body=body(f"During{attempt}"), headers=headers
        )
        assert status == 503, answer
        assert answer["error"]["code"] == "serviceUnavailable" and int(response_headers["Retry-After"]) > 0
        status, _, answer = raw_http("GET", f"{url}/{accepted[0]}", body=None, headers=headers)
        assert status == 503 and answer["error"]["code"] == "serviceUnavailable"
    status, answer = http("POST", f"{base_url}/ims/token/v3", form=token_form)
    assert status == 503 and answer["error"] == "temporarily_unavailable"
    assert Event.objects.count() == stored_before_cut  # nothing acknowledged, nothing stored
    wait_until(
        lambda: "OperationalError" in worker.output(tail=None),
        timeout=20,
        what="the worker's sweep to meet the cut",
        process=worker,
    )
    assert set(Event.objects.filter(pkey__in=accepted).values_list("status", flat=True)) == {"pending"}

    proxy.restore()
    recovered = {}

    def accepted_again() -> bool:
        status, _, answer = raw_http("POST", url, body=body("After"), headers=headers)
        recovered["answer"] = answer
        return status == 201

    wait_until(accepted_again, timeout=20, what="the API to accept events again", process=web)
    accepted.append(recovered["answer"]["PKey"])
    assert web.popen.poll() is None and worker.popen.poll() is None  # nothing was restarted

    def all_processed() -> bool:
        return set(Event.objects.filter(pkey__in=accepted).values_list("status", flat=True)) == {"processed"}

    wait_until(all_processed, timeout=40, what="the accepted events to be processed", process=worker)
    subjects = sorted(m.subject for m in mailbox.wait_for(3))
    assert subjects == sorted(f"{n}, your cart is waiting" for n in ("Before1", "Before2", "After"))
    assert Event.objects.count() == stored_before_cut + 1
