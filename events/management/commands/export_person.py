"""`manage.py export_person ORG EMAIL`: everything kept about a person, as JSON on stdout
(events.person): profile, events with their history, deliveries with what was sent, quarantine."""

import json

from django.core.management.base import CommandError
from django.core.serializers.json import DjangoJSONEncoder

from campaign.cli import CampaignCommand
from events.person import PersonError, export_person


class Command(CampaignCommand):
    help = "Print everything kept about EMAIL in ORG as JSON (profile, events, deliveries, quarantine)."

    def add_arguments(self, parser):
        parser.add_argument("organization")
        parser.add_argument("email")

    def handle(self, *args, organization: str, email: str, **options):
        found = self.organization(organization)
        try:
            data = export_person(organization=found, email=email)
        except PersonError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder))
