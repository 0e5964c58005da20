"""A draft tried on the last N real events (issue 17, part 3): each event classified for the draft
and the live version, nothing sent, the result kept a day, the page scoped and bounded."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from campaign.roles import MARKETERS
from events import retention
from events.models import Event
from messages import draft_try, services
from messages.models import Delivery, DraftTry
from tests.conftest import publish_events
from tests.factories import member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the try runs inline, as in eager mode


def url(message, page: str = "try") -> str:
    return f"/admin/transactional/transactionalmessage/{message.pk}/{page}/"


def event(configuration, pkey: str, **ctx) -> Event:
    return Event.objects.create(
        organization_id=configuration.organization_id,
        configuration=configuration,
        pkey=pkey,
        email="jack@example.com",
        ctx=ctx,
        next_attempt_at=timezone.now(),
    )


def edit_draft(message, **parts) -> None:
    for name, value in parts.items():
        setattr(message, name, value)
    services.save_draft(message=message)


@pytest.fixture
def traffic(cart_configuration):
    """Three events, the newest without `lastProduct`, one whose `cartAmount` is not a list."""
    event(cart_configuration, "old", firstName="Ann", lastProduct="Jacket", cartAmount="12")
    event(cart_configuration, "middle", firstName="Bob", lastProduct="Boots", cartAmount="30")
    event(cart_configuration, "newest", firstName="Cy", cartAmount="5")
    return cart_configuration


def sides(attempt: DraftTry) -> dict:
    return {side["name"]: side for side in attempt.result["sides"]}


def test_the_try_classifies_each_event_for_the_draft_and_the_live_version(traffic):
    message = traffic.message
    edit_draft(message, subject="For {{ ctx.firstName }}: {{ ctx.lastProduct }}")
    attempt = draft_try.start(message=message, size=10)
    assert attempt.status == DraftTry.Status.DONE
    assert attempt.result["events"] == 3 and attempt.result["tried"] == 3
    draft, live = sides(attempt)["draft"], sides(attempt)["live"]
    assert draft["rendered"] == 2 and draft["counts"] == {"rendered": 2, "missingField": 1}
    # The live version's HTML prints ctx.lastProduct too: the same event lacks it there.
    assert live["counts"]["missingField"] == 1
    (row,) = attempt.result["rows"]
    assert row["pkey"] == "newest" and "lastProduct" in row["sides"][0]["reason"]
    assert draft["outputs"][0]["pkey"] == "middle"  # newest first, the failing one not shown
    assert dict(draft["outputs"][0]["parts"])["subject"] == "For Bob: Boots"


def test_a_field_only_tested_is_not_missing_and_errors_and_bounds_are_told_apart(traffic, settings):
    message = traffic.message
    edit_draft(
        message,
        subject="{% if ctx.lastProduct %}{{ ctx.lastProduct }}{% endif %}"
        "{{ ctx.lastProduct | default('-') }}{% for p in ctx.products %}{{ p }}{% endfor %}",
        html="<p>{{ '%d' % ctx.cartAmount }}</p>",  # a render error for every event (text, not a number)
        text="{{ ctx.firstName }}",
    )
    attempt = draft_try.start(message=message, size=3)
    draft = sides(attempt)["draft"]
    assert draft["counts"] == {"renderError": 3}
    assert "TypeError" in attempt.result["rows"][0]["sides"][0]["reason"]
    settings.RENDER_MAX_LOOP_ITERATIONS = 3
    edit_draft(message, html="{% for c in ctx.firstName * 5 %}{{ c }}{% endfor %}")
    attempt = draft_try.start(message=message, size=3)
    assert sides(attempt)["draft"]["counts"] == {"exceededBound": 3}
    assert "RENDER_MAX_LOOP_ITERATIONS" in attempt.result["rows"][0]["sides"][0]["reason"]


def test_only_the_last_n_events_are_tried_within_the_budget(traffic, settings):
    attempt = draft_try.start(message=traffic.message, size=2)
    assert attempt.result["events"] == 2
    settings.DRAFT_TRY_BUDGET_SECONDS = 0
    attempt = draft_try.start(message=traffic.message, size=3)
    assert sides(attempt)["draft"]["counts"]["notTried"] >= 2


@pytest.mark.parametrize("size", [0, 201, -1, True, "5"])
def test_the_number_of_events_is_bounded(traffic, size):
    with pytest.raises(draft_try.TryRefused):
        draft_try.start(message=traffic.message, size=size)
    assert not DraftTry.objects.exists()


def test_nothing_is_sent_and_only_the_try_is_stored(traffic, smtp_email):
    events_before = list(Event.objects.values_list("pk", "status", "ctx"))
    draft_try.start(message=traffic.message, size=200)
    assert not Delivery.objects.exists() and len(mail.outbox) == 0 and smtp_email.messages == []
    assert list(Event.objects.values_list("pk", "status", "ctx")) == events_before
    assert DraftTry.objects.count() == 1


def test_a_try_lives_a_day_then_the_retention_purge_removes_it(traffic):
    attempt = draft_try.start(message=traffic.message, size=5)
    assert attempt.expires_at - attempt.created_at == dt.timedelta(days=1)
    assert retention.purge()["transactional.DraftTry"] == 0
    later = timezone.now() + dt.timedelta(days=1, seconds=1)
    assert retention.count_purgeable(now=later)["transactional.DraftTry"] == 1
    assert retention.purge(now=later)["transactional.DraftTry"] == 1
    assert not DraftTry.objects.exists()


def test_the_display_data_comes_from_ctx_for_display(traffic, monkeypatch):
    from events import selectors

    monkeypatch.setattr(selectors, "ctx_for_display", lambda e: {**e.ctx, "firstName": "***"})
    edit_draft(traffic.message, subject="{{ ctx.firstName }}")
    attempt = draft_try.start(message=traffic.message, size=3)
    assert dict(sides(attempt)["draft"]["outputs"][0]["parts"])["subject"] == "***"


# --- the admin page --------------------------------------------------------------------------


def test_the_marketer_tries_the_draft_and_sees_both_sides(client, marketer, traffic):
    message = traffic.message
    edit_draft(message, subject="{{ ctx.lastProduct }}")
    client.force_login(marketer)
    change = client.get(f"/admin/transactional/transactionalmessage/{message.pk}/change/").content.decode()
    assert url(message) in change
    page = client.get(url(message)).content.decode()
    assert "Try this draft on the last N events" in page
    answer = client.post(url(message), {"size": "3"})
    assert answer.status_code == 302
    page = client.get(answer["Location"]).content.decode()
    assert "Live version (v1)" in page and "Missing field" in page and 'data-pkey="newest"' in page
    attempt = DraftTry.objects.get()
    status = client.get(url(message, f"try/{attempt.pk}/status")).json()
    assert status["status"] == "done"


@pytest.mark.parametrize("size", ["0", "201", "abc", ""])
def test_the_form_refuses_a_number_out_of_bounds(client, marketer, traffic, size):
    client.force_login(marketer)
    answer = client.post(url(traffic.message), {"size": size})
    assert answer.status_code == 200 and "errorlist" in answer.content.decode()
    assert not DraftTry.objects.exists()


def test_another_organizations_message_and_try_are_not_found(client, traffic, other_organization):
    message = traffic.message
    attempt = draft_try.start(message=message, size=1)
    stranger = member(organization=other_organization, role=MARKETERS)
    client.force_login(stranger)
    assert client.get(url(message)).status_code == 404
    assert client.post(url(message), {"size": "3"}).status_code == 404
    assert client.get(url(message, f"try/{attempt.pk}/status")).status_code == 404
    other = publish_events(other_organization, {**_cart_spec(), "name": "otherCart"})[0].message
    assert client.get(url(other) + f"?try={attempt.pk}").status_code == 404
    assert client.get(url(other, f"try/{attempt.pk}/status")).status_code == 404
    assert DraftTry.objects.count() == 1


def _cart_spec() -> dict:
    import copy

    from tests.conftest import CART_EVENT

    return copy.deepcopy(CART_EVENT)


def test_a_try_is_stored_pending_for_the_worker_and_the_page_follows_it(
    client, marketer, traffic, settings, monkeypatch
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from messages import tasks

    handed: list[list[int]] = []
    monkeypatch.setattr(tasks.run_draft_try, "apply_async", lambda args: handed.append(args))
    client.force_login(marketer)
    answer = client.post(url(traffic.message), {"size": "3"})
    attempt = DraftTry.objects.get()
    assert handed == [[attempt.pk]] and attempt.status == DraftTry.Status.PENDING
    page = client.get(answer["Location"]).content.decode()
    assert 'data-state="pending"' in page and "draft_try.js" in page and "<script>" not in page
    assert client.get(url(traffic.message, f"try/{attempt.pk}/status")).json()["status"] == "pending"
    draft_try.run(attempt.pk)  # the worker
    assert client.get(url(traffic.message, f"try/{attempt.pk}/status")).json()["status"] == "done"
    draft_try.run(attempt.pk)  # delivered twice: the second run finds it taken and does nothing
    assert DraftTry.objects.get().status == DraftTry.Status.DONE


def test_a_try_the_broker_cannot_take_says_so(traffic, settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from messages import tasks

    def down(args):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.run_draft_try, "apply_async", down)
    attempt = draft_try.start(message=traffic.message, size=3)
    assert attempt.status == DraftTry.Status.FAILED and "could not be reached" in attempt.result["error"]


def test_only_who_may_change_the_message_tries_it(client, organization, traffic):
    from campaign.models import Membership
    from tests.factories import UserFactory

    viewer = UserFactory()
    Membership.objects.create(user=viewer, organization=organization)
    viewer.is_staff = True
    viewer.save()
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_transactionalmessage"))
    client.force_login(viewer)
    assert (
        client.get(f"/admin/transactional/transactionalmessage/{traffic.message.pk}/change/").status_code
        == 200
    )
    assert client.get(url(traffic.message)).status_code == 403
    assert client.post(url(traffic.message), {"size": "3"}).status_code == 403
    assert not DraftTry.objects.exists()
