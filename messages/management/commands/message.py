"""`manage.py message ORG EVTname publish|pause|resume|unpublish`."""

from django.core.management.base import CommandError

from campaign.cli import CampaignCommand
from events import publication
from events.models import format_event_id
from events.services import normalise_event_name
from messages.lifecycle import PublicationError
from messages.models import TransactionalMessage

ACTIONS = {
    "publish": lambda message: publication.publish_message(message=message),
    "pause": lambda message: publication.pause_message(message=message),
    "resume": lambda message: publication.resume_message(message=message),
    "unpublish": lambda message: publication.unpublish_message(message=message),
}


class Command(CampaignCommand):
    help = "Publish, pause, resume or unpublish the transactional message of an event."

    def add_arguments(self, parser):
        parser.add_argument("organization")
        parser.add_argument("event", help="the event id, e.g. EVTcartAbandonment")
        parser.add_argument("action", choices=sorted(ACTIONS))

    def handle(self, *args, organization: str, event: str, action: str, **options):
        name = normalise_event_name(event)
        message = (
            TransactionalMessage.objects.select_related("configuration")
            .filter(configuration__organization__slug=organization, configuration__name=name)
            .first()
        )
        if message is None:
            raise CommandError(
                f"No message for {format_event_id(name)} in organization '{organization}' "
                "(publish the event first)."
            )
        try:
            ACTIONS[action](message)
        except PublicationError as error:
            raise CommandError(" ".join(error.errors)) from None
        message.refresh_from_db()
        self.stdout.write(f"{format_event_id(name)}: message {message.status}")
