"""`manage.py import_resource ORG NAME FILE.csv --key sku`: a custom resource, all or nothing."""

from django.core.management.base import CommandError

from campaign.cli import CampaignCommand
from campaign.resources import ResourceFileError, import_resource_csv


class Command(CampaignCommand):
    help = (
        "Import (or replace) a custom resource, a lookup table such as a product catalogue, from a CSV "
        "file with a header row; --key names the column that finds a row."
    )

    def add_arguments(self, parser):
        parser.add_argument("organization")
        parser.add_argument("name")
        parser.add_argument("file")
        parser.add_argument("--key", required=True, help="the column whose value finds a row (e.g. sku)")

    def handle(self, *args, organization: str, name: str, file: str, key: str, **options):
        found = self.organization(organization)
        try:
            with open(file, newline="", encoding="utf-8-sig") as handle:
                resource = import_resource_csv(organization=found, name=name, key=key, handle=handle)
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{file} is not UTF-8 text.") from None
        except ResourceFileError as error:
            raise CommandError(f"{file}: {error} (nothing was imported)") from None
        self.stdout.write(f"{resource.name}: {resource.row_count} row(s) imported, by {resource.key_column}.")
