"""`manage.py import_profiles ORG FILE.csv`: create or update profiles by email, all or nothing."""

from django.core.management.base import CommandError

from campaign.cli import CampaignCommand
from campaign.profiles import ProfileFileError, import_profiles_csv


class Command(CampaignCommand):
    help = "Import profiles from a CSV file with a header row (email, firstName, lastName, mobilePhone, ...)."

    def add_arguments(self, parser):
        parser.add_argument("organization")
        parser.add_argument("file")

    def handle(self, *args, organization: str, file: str, **options):
        found = self.organization(organization)
        try:
            with open(file, newline="", encoding="utf-8-sig") as handle:
                created, updated = import_profiles_csv(organization=found, handle=handle)
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{file} is not UTF-8 text.") from None
        except ProfileFileError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{created} profile(s) created, {updated} updated.")
