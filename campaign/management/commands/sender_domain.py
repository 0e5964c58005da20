"""`manage.py sender_domain ORG add|remove DOMAIN` and `sender_domain ORG list`: the domains an
organization's messages may send from (From and Reply-To); see campaign.senders."""

from django.core.management.base import CommandError

from campaign import senders
from campaign.cli import CampaignCommand


class Command(CampaignCommand):
    help = "Declare (add), withdraw (remove) or list the domains an organization's messages may send from."

    def add_arguments(self, parser):
        parser.add_argument("organization", help="organization id, e.g. geometrixx")
        parser.add_argument("action", choices=["add", "remove", "list"])
        parser.add_argument("domain", nargs="?", default="", help="e.g. geometrixx.example (add, remove)")

    def handle(self, *args, organization: str, action: str, domain: str, **options):
        found = self.organization(organization)
        if action == "list":
            for declared in senders.declared_domains(found):
                self.stdout.write(declared)
            return
        if not domain:
            raise CommandError(f"sender_domain {organization} {action} needs a DOMAIN, e.g. example.com.")
        try:
            if action == "add":
                added = senders.declare_sender_domain(organization=found, domain=domain)
                self.stdout.write(f"Sender domain {added.domain} added to {found.slug}.")
            else:
                removed = senders.remove_sender_domain(organization=found, domain=domain)
                self.stdout.write(f"Sender domain {removed} removed from {found.slug}.")
        except senders.SenderError as error:
            raise CommandError(str(error)) from None
