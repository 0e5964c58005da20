"""`manage.py message ORG EVTname publish|pause|resume|unpublish`, as operators and scripts run it."""

from __future__ import annotations

import copy
import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from events.models import Event, EventConfiguration
from events.schema import validate_event
from events.services import ingest
from messages.models import TransactionalMessage
from tests.cli import assert_bad_input
from tests.conftest import CART_EVENT, publish_events, seed_body

FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


def message_command(*args: str) -> str:
    out = io.StringIO()
    call_command("message", *args, stdout=out)
    return out.getvalue().strip()


def accept(configuration) -> Event:
    body = seed_body(scheduled=None, expiration=FUTURE)
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def status_of(event: Event) -> str:
    return Event.objects.get(pk=event.pk).status


# --- As a user runs it -------------------------------------------------------------------------


def test_message_command_pauses_and_says_the_new_state(cli):
    result = cli.run("message", "geometrixx", "EVTcartAbandonment", "pause")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "EVTcartAbandonment: message paused"
    assert result.stderr == ""
    assert cli.rows(
        "SELECT m.status FROM transactional_transactionalmessage m "
        "JOIN events_eventconfiguration c ON c.message_id = m.id WHERE c.name = 'cartAbandonment'"
    ) == [("paused",)]


def test_refused_message_commands_exit_2_with_one_line_and_change_nothing(cli):
    def message_states():
        return cli.rows(
            "SELECT c.name, c.status, m.status FROM transactional_transactionalmessage m "
            "JOIN events_eventconfiguration c ON c.message_id = m.id ORDER BY c.name"
        )

    before = message_states()
    assert before == [("cartAbandonment", "published", "published"), ("welcome", "draft", "draft")]
    cases = {
        "pause of a draft": (["geometrixx", "EVTwelcome", "pause"], "Only a published message can be paused"),
        "publish before the event": (["geometrixx", "EVTwelcome", "publish"], "Publish the event EVTwelcome"),
        "unknown event": (["geometrixx", "EVTnope", "publish"], "EVTnope"),
        "event of another organization": (["acme", "EVTcartAbandonment", "pause"], "acme"),
        "invalid action": (["geometrixx", "EVTcartAbandonment", "delete"], "invalid choice: 'delete'"),
    }
    results = cli.run_all([["message", *arguments] for arguments, _ in cases.values()])
    for (case, (_, expected)), result in zip(cases.items(), results, strict=True):
        assert_bad_input(result)
        assert expected in result.stderr, (case, result.stderr)
    assert message_states() == before


# --- In process --------------------------------------------------------------------------------


@pytest.fixture
def draft_message(organization):
    """An event published with --publish off for its message: the message is still a draft."""
    (configuration,) = publish_events(organization, {**copy.deepcopy(CART_EVENT), "name": "orderShipped"})
    message = TransactionalMessage.objects.get(configuration=configuration)
    TransactionalMessage.objects.filter(pk=message.pk).update(status="draft", live_version=None)
    return TransactionalMessage.objects.get(pk=message.pk)


@pytest.mark.django_db
def test_publish_pause_resume_unpublish_move_the_message_and_its_events(cart_configuration):
    event = accept(cart_configuration)
    message = cart_configuration.message

    assert (
        message_command("geometrixx", "EVTcartAbandonment", "pause") == "EVTcartAbandonment: message paused"
    )
    assert TransactionalMessage.objects.get(pk=message.pk).status == "paused"
    assert status_of(event) == "paused"

    assert (
        message_command("geometrixx", "EVTcartAbandonment", "resume")
        == "EVTcartAbandonment: message published"
    )
    assert TransactionalMessage.objects.get(pk=message.pk).status == "published"
    assert status_of(event) == "pending"

    assert (
        message_command("geometrixx", "EVTcartAbandonment", "unpublish")
        == "EVTcartAbandonment: message draft"
    )
    assert TransactionalMessage.objects.get(pk=message.pk).status == "draft"
    assert EventConfiguration.objects.get(pk=cart_configuration.pk).status == "draft"
    assert status_of(event) == "routingFailed"


@pytest.mark.django_db
def test_publish_makes_the_draft_live(draft_message):
    assert message_command("geometrixx", "orderShipped", "publish") == "EVTorderShipped: message published"
    message = TransactionalMessage.objects.get(pk=draft_message.pk)
    assert message.status == "published" and message.live_version.content == message.draft_content()


@pytest.mark.django_db
def test_the_event_may_be_named_without_its_evt_prefix(cart_configuration):
    assert message_command("geometrixx", "cartAbandonment", "pause") == "EVTcartAbandonment: message paused"


@pytest.mark.django_db
def test_pausing_a_draft_message_is_refused_with_exit_code_2(draft_message):
    with pytest.raises(CommandError) as refused:
        message_command("geometrixx", "EVTorderShipped", "pause")
    assert refused.value.returncode == 2
    assert "Only a published message can be paused (this one is draft)." in str(refused.value)
    assert TransactionalMessage.objects.get(pk=draft_message.pk).status == "draft"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("resume", "Only a paused message can be resumed (this one is published)."),
        ("publish", None),  # publishing again is allowed: it makes no new version
    ],
)
def test_resume_of_a_published_message_is_refused_and_publish_is_idempotent(
    cart_configuration, action, expected
):
    versions = cart_configuration.message.versions.count()
    if expected is None:
        assert message_command("geometrixx", "EVTcartAbandonment", action).endswith("published")
    else:
        with pytest.raises(CommandError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            message_command("geometrixx", "EVTcartAbandonment", action)
    message = TransactionalMessage.objects.get(configuration=cart_configuration)
    assert message.status == "published" and message.versions.count() == versions


@pytest.mark.django_db
def test_unpublishing_a_draft_message_is_refused(draft_message):
    with pytest.raises(CommandError, match="The message is not published.") as refused:
        message_command("geometrixx", "EVTorderShipped", "unpublish")
    assert refused.value.returncode == 2


@pytest.mark.django_db
def test_a_missing_argument_is_refused_with_code_2(cart_configuration):
    with pytest.raises(CommandError, match="required: action") as refused:
        message_command("geometrixx", "EVTcartAbandonment")
    assert refused.value.returncode == 2


@pytest.mark.django_db
def test_publishing_a_message_whose_template_no_longer_fits_is_refused(draft_message):
    TransactionalMessage.objects.filter(pk=draft_message.pk).update(subject="{{ ctx.couponCode }}")
    with pytest.raises(CommandError) as refused:
        message_command("geometrixx", "EVTorderShipped", "publish")
    assert "ctx.couponCode" in str(refused.value) and refused.value.returncode == 2
    assert TransactionalMessage.objects.get(pk=draft_message.pk).status == "draft"


@pytest.mark.django_db
def test_an_unknown_action_is_refused_in_process_too(cart_configuration):
    with pytest.raises(CommandError, match="invalid choice"):
        message_command("geometrixx", "EVTcartAbandonment", "archive")
    assert TransactionalMessage.objects.get(configuration=cart_configuration).status == "published"


@pytest.mark.django_db
def test_an_event_of_another_organization_is_not_found(cart_configuration, other_organization):
    with pytest.raises(CommandError, match="No message for EVTcartAbandonment in organization 'acme'"):
        message_command("acme", "EVTcartAbandonment", "pause")
    assert TransactionalMessage.objects.get(configuration=cart_configuration).status == "published"
