"""End to end: an email sent by the real worker carries tracking links on PUBLIC_URL; opening its
pixel and following its link through gunicorn record an open and a click, and a forged link is 404."""

from __future__ import annotations

import copy
import datetime as dt
import http.client
import re
import urllib.parse

import pytest
from django.utils import timezone

from messages import tracking
from messages.models import Delivery, TrackingHit
from tests.conftest import CART_EVENT, SEED_BODY, publish_events
from tests.e2e.stack import http as http_json
from tests.e2e.stack import wait_until

pytestmark = [pytest.mark.e2e]
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.768Z")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def get(url: str, **headers: str) -> http.client.HTTPResponse:
    """One GET, redirects not followed (urllib would follow the click to the shop)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    connection.request("GET", parts.path, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_an_open_and_a_click_of_a_real_send_are_recorded(stack, geometrixx):
    event = copy.deepcopy(CART_EVENT)
    event["message"]["html"] = (
        '<p>Hello {{ ctx.firstName }}</p><a href="https://shop.example.com/cart">Cart</a>'
    )
    publish_events(geometrixx, event)
    headers = stack.token_headers(geometrixx)
    status, answer = http_json(
        "POST",
        f"{stack.base_url}/geometrixx/campaign/mcgeometrixx/EVTcartAbandonment",
        body={**copy.deepcopy(SEED_BODY), "scheduled": None, "expiration": FUTURE},
        headers=headers,
    )
    assert status == 201, answer
    (received,) = stack.mailbox.wait_for(1)
    html = received.part("text/html")
    (pixel,) = re.findall(r'<img src="([^"]+)"', html)
    (link,) = re.findall(r'href="([^"]+)"', html)
    assert pixel.startswith(f"{stack.base_url}/t/o/") and link.startswith(f"{stack.base_url}/t/c/")

    wait_until(lambda: Delivery.objects.exists(), timeout=10, what="the delivery's row")
    # A reader opens later than a scanner would (an open within a second of the send is automated).
    Delivery.objects.update(created_at=timezone.now() - dt.timedelta(minutes=5))
    opened = get(pixel, **{"User-Agent": BROWSER})
    assert opened.status == 200 and opened.getheader("Content-Type") == "image/gif"
    clicked = get(link, **{"User-Agent": BROWSER})
    assert clicked.status == 302 and clicked.getheader("Location") == "https://shop.example.com/cart"
    assert (
        get(link[:-2] + ("xx" if not link.endswith("xx") else "yy"), **{"User-Agent": BROWSER}).status == 404
    )

    hits = list(TrackingHit.objects.order_by("id").values_list("kind", "first", "automated"))
    assert hits == [("open", True, False), ("click", True, False)]
    delivery = Delivery.objects.get()
    assert delivery.event_link.event.pkey == answer["PKey"]
    assert tracking.counts(version_ids=[delivery.version_id]).unique_clicks == 1

    # The event's timeline ends with its delivery, then the open and the click (its link by index).
    url = f"{stack.base_url}/geometrixx/campaign/mcgeometrixx/EVTcartAbandonment/{answer['PKey']}/timeline"
    status, told = http_json("GET", url, headers=headers)
    assert status == 200
    steps = [s["step"] for s in told["steps"]]
    assert steps[-2:] == ["opened", "clicked"] and "delivery" in steps
    (sent,) = [s for s in told["steps"] if s["step"] == "delivery"]
    assert sent["attempt"] == 1 and sent["messageId"] == received.message["Message-ID"]
    assert told["steps"][-1]["link"] == 0 and told["steps"][-1]["first"] is True
    assert "shop.example.com" not in str(told)
