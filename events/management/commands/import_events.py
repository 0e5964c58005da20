"""`manage.py import_events FILE.json [--publish]`: configuration as code, all or nothing."""

import json

from django.core.management.base import CommandError

from campaign.cli import CampaignCommand
from events.configuration_file import ConfigurationFileError, import_file


class Command(CampaignCommand):
    help = "Load event configurations and their messages from a JSON file (format in the README)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--publish", action="store_true", help="publish each event and its message")

    def handle(self, *args, file: str, publish: bool, **options):
        try:
            with open(file, encoding="utf-8") as handle:
                data = json.load(handle)
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{file} is not UTF-8 text.") from None
        except json.JSONDecodeError as error:
            raise CommandError(
                f"{file} is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
            ) from None
        try:
            imported = import_file(data, publish=publish)
        except ConfigurationFileError as error:
            raise CommandError(f"{file}: {error} (nothing was imported)") from None
        state = "published" if publish else "saved"
        for configuration in imported:
            self.stdout.write(f"{configuration.event_id} {state}")
