"""`manage.py export_events ORG`: prints the organization's event configurations in the import format."""

import json

from campaign.cli import CampaignCommand
from events.configuration_file import export_organization


class Command(CampaignCommand):
    help = "Print an organization's event configurations and messages as JSON (the import_events format)."

    def add_arguments(self, parser):
        parser.add_argument("organization")

    def handle(self, *args, organization: str, **options):
        found = self.organization(organization)
        self.stdout.write(json.dumps(export_organization(found), indent=2, ensure_ascii=False))
