"""`manage.py create_organization ORG [--name NAME] [--sender ADDRESS]`."""

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from campaign import services
from campaign.cli import CampaignCommand


class Command(CampaignCommand):
    help = "Create an organization (its id is the ORG of the API's URLs)."

    def add_arguments(self, parser):
        parser.add_argument("organization", help="organization id, e.g. geometrixx")
        parser.add_argument("--name", default="", help="display name (default: the id)")
        parser.add_argument(
            "--sender",
            default="",
            help="default From address of its emails; its domain becomes a sender domain",
        )

    def handle(self, *args, organization: str, name: str, sender: str, **options):
        try:
            created = services.create_organization(slug=organization, name=name, sender_address=sender)
        except ValidationError as error:
            raise CommandError(_one_line(error)) from None
        self.stdout.write(
            f"Created organization {created.slug} (API: /{created.slug}/campaign/{created.api_name}/)"
        )
        for domain in created.sender_domains.values_list("domain", flat=True):
            self.stdout.write(f"Sender domain: {domain}")


# The model's fields as the command's options, so that an error names what the operator typed.
OPTIONS = {"sender_address": "--sender", "name": "--name", "sender_name": "--name"}


def _one_line(error: ValidationError) -> str:
    if not hasattr(error, "error_dict"):
        return " ".join(error.messages)
    parts = []
    for field, errors in error.message_dict.items():
        text = " ".join(errors)
        parts.append(f"{OPTIONS[field]}: {text}" if field in OPTIONS else text)
    return " ".join(dict.fromkeys(parts))  # --name fills two fields: say it once
