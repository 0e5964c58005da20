"""A message's and an event type's statuses move through allowed-moves tables, each move leaving a
history line with who did it; the admin shows that history."""

from __future__ import annotations

import re

import pytest

from campaign.models import ProofRecipient
from events import publication
from events.models import ConfigurationStatusChange
from messages import lifecycle, services
from messages.models import MessageStatusChange, TransactionalMessage

pytestmark = pytest.mark.django_db


def history(message: TransactionalMessage) -> list[tuple]:
    rows = MessageStatusChange.objects.filter(message=message).order_by("id")
    return [(r.action, r.from_status, r.to_status, r.user.username if r.user else None) for r in rows]


def test_publish_pause_resume_unpublish_and_proofs_are_the_messages_history(cart_configuration, marketer):
    message = cart_configuration.message  # published by the fixture's import (no user: the CLI)
    ProofRecipient.objects.create(
        organization=message.configuration.organization, kind="email", value="qa@example.com"
    )
    message.subject = "New {{ ctx.firstName }}"
    services.save_draft(message=message)
    publication.publish_message(message=message, user=marketer)
    publication.pause_message(message=message, user=marketer)
    services.send_proof(message=message, addresses=["qa@example.com"], user=marketer)
    publication.resume_message(message=message, user=marketer)
    publication.unpublish_message(message=message, user=marketer)
    name = marketer.username
    assert history(message) == [
        ("publish", "draft", "published", None),
        ("publish", "published", "published", name),
        ("pause", "published", "paused", name),
        ("proof", "paused", "paused", name),
        ("resume", "paused", "published", name),
        ("unpublish", "published", "draft", name),
    ]
    versions = list(
        MessageStatusChange.objects.filter(message=message, action="publish")
        .values_list("version_number", flat=True)
        .order_by("id")
    )
    assert versions == [1, 2]


def test_a_move_the_table_forbids_changes_nothing_and_leaves_no_history(organization):
    configuration = publication.publish_configuration(configuration=publication_ready_draft(organization))
    message = configuration.message  # a draft: made by the configuration's publication
    assert message.status == "draft"
    assert lifecycle.move(message, to=TransactionalMessage.Status.PAUSED, action="pause") is False
    message.refresh_from_db()
    assert message.status == "draft" and history(message) == []
    with pytest.raises(lifecycle.PublicationError, match="Only a published message can be paused"):
        publication.pause_message(message=message)


def test_an_event_types_publications_are_its_history(cart_configuration, administrator):
    publication.unpublish_configuration(
        configuration=cart_configuration, user=administrator, reason="maintenance"
    )
    publication.publish_configuration(configuration=cart_configuration, user=administrator)
    rows = ConfigurationStatusChange.objects.filter(configuration=cart_configuration).order_by("id")
    assert [
        (r.action, r.from_status, r.to_status, r.user.username if r.user else None, r.note) for r in rows
    ] == [
        ("publish", "draft", "published", None, ""),
        ("unpublish", "published", "draft", administrator.username, "maintenance"),
        ("publish", "draft", "published", administrator.username, ""),
    ]


def test_the_admin_shows_who_paused_the_message(client, cart_configuration, marketer):
    message = cart_configuration.message
    publication.pause_message(message=message, user=marketer)
    client.force_login(marketer)
    page = client.get(f"/admin/transactional/transactionalmessage/{message.pk}/change/").content.decode()
    history = " ".join(page[page.index('id="status_changes-group"') :].split())  # the History section
    assert '<td class="field-action"> <p>pause</p> </td>' in history
    user_cell = re.search(r'<td class="field-by"> <p>(.*?)</p> </td>', history)
    assert user_cell and user_cell.group(1) == marketer.username  # text: a user's page is not a marketer's


def publication_ready_draft(organization):
    from tests.factories import ConfigurationFactory, FieldFactory

    configuration = ConfigurationFactory(organization=organization, name="orderShipped")
    FieldFactory(configuration=configuration, name="orderId")
    return configuration
