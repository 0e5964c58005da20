"""`manage.py forget ORG EMAIL`: erases a person's profile, events, deliveries, opens and clicks
(events.person), one line per table: `events.Event: 3 deleted`."""

from django.core.management.base import CommandError

from campaign.cli import CampaignCommand
from events.person import PersonError, forget_person


class Command(CampaignCommand):
    help = "Erase everything kept about EMAIL in ORG: profile, events, deliveries, opens and clicks."

    def add_arguments(self, parser):
        parser.add_argument("organization")
        parser.add_argument("email")

    def handle(self, *args, organization: str, email: str, **options):
        found = self.organization(organization)
        try:
            deleted = forget_person(organization=found, email=email)
        except PersonError as error:
            raise CommandError(str(error)) from None
        if not deleted:
            self.stdout.write(f"Nothing kept about {email} in {found.slug}.")
        for label, count in deleted.items():
            self.stdout.write(f"{label}: {count} deleted")
