"""`manage.py create_api_credential ORG`: prints `{"api_key": ..., "client_secret": ...}` once."""

import json

from campaign import services
from campaign.cli import CampaignCommand


class Command(CampaignCommand):
    help = "Create an API credential for an organization; the secret is printed once and stored hashed."

    def add_arguments(self, parser):
        parser.add_argument("organization")
        parser.add_argument("--name", default="", help="what the credential is for")

    def handle(self, *args, organization: str, name: str, **options):
        found = self.organization(organization)
        issued = services.create_api_credential(organization=found, name=name)
        self.stdout.write(
            json.dumps({"api_key": issued.credential.api_key, "client_secret": issued.client_secret})
        )
