"""events.publication owns the lock order (the configuration's row, then the message's) and the
statuses it moves; nothing read before a workflow ran writes a status back afterwards."""

from __future__ import annotations

import copy
import threading
import time

import pytest
from django.contrib.admin.sites import site
from django.db import connection, connections

from events import publication
from events.configuration_file import import_file
from events.models import EventConfiguration
from messages import services as message_services
from messages.models import MessageStatusChange, TransactionalMessage
from tests.conftest import CART_EVENT, publish_events


@pytest.mark.django_db(transaction=True)
def test_republishing_a_version_while_another_publishes_does_not_deadlock(organization, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks and deadlock detection are PostgreSQL's (make test-postgres runs this)")
    configuration = publish_events(organization, copy.deepcopy(CART_EVENT))[0]
    message = TransactionalMessage.objects.get(configuration=configuration)
    version = message.live_version
    draft_saved, publisher_started = threading.Event(), threading.Event()
    original = message_services.save_draft

    def save_then_let_the_other_in(*, message):
        original(message=message)
        draft_saved.set()
        publisher_started.wait(5)
        time.sleep(0.5)  # widen the window in which the other workflow takes its first lock

    monkeypatch.setattr(message_services, "save_draft", save_then_let_the_other_in)
    errors: list[Exception] = []

    def publisher():
        try:
            draft_saved.wait(5)
            publisher_started.set()
            publication.publish_message(message=TransactionalMessage.objects.get(pk=message.pk))
        except Exception as error:  # a deadlock is reported here or in the main thread
            errors.append(error)
        finally:
            connections.close_all()

    other = threading.Thread(target=publisher)
    other.start()
    try:
        publication.republish_version(version=version)
    except Exception as error:
        errors.append(error)
    other.join(10)
    assert errors == []


def test_an_import_never_writes_back_a_status_it_read_before_a_pause(cart_configuration, monkeypatch):
    original = TransactionalMessage.load_content

    def paused_meanwhile(self, content):  # another process pauses between the import's read and save
        publication.pause_message(message=TransactionalMessage.objects.get(pk=self.pk))
        original(self, content)

    monkeypatch.setattr(TransactionalMessage, "load_content", paused_meanwhile)
    import_file({"organization": cart_configuration.organization.slug, "events": [copy.deepcopy(CART_EVENT)]})
    message = TransactionalMessage.objects.get(configuration=cart_configuration)
    last = MessageStatusChange.objects.filter(message=message).first()
    assert (message.status, last.action, last.to_status) == ("paused", "pause", "paused")


def test_the_event_type_page_never_writes_back_a_status_it_read_before_an_unpublish(
    rf, cart_configuration, administrator
):
    admin = site._registry[EventConfiguration]
    request = rf.post("/")
    request.user = administrator
    stale = EventConfiguration.objects.get(pk=cart_configuration.pk)  # the page's copy
    publication.unpublish_configuration(configuration=cart_configuration)  # meanwhile, elsewhere
    form = admin.get_form(request, stale, change=True)(instance=stale, data={"label": "Renamed"})
    stale.label = "Renamed"
    admin.save_model(request, stale, form, change=True)
    stored = EventConfiguration.objects.get(pk=cart_configuration.pk)
    assert (stored.label, stored.status) == ("Renamed", "draft")
