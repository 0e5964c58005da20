"""The base of our management commands: bad input exits with code 2 and one line, never a traceback.

stdout says what was done, stderr says what went wrong, one line each: scripts and CI read them.
The services' INFO logs (e.g. "published EVT...", written even when the import is then rolled
back) would mix into stderr, so a command shows them only with `--verbosity 2` or more (or when
it sets `show_info_logs`, as a long-running server may).
"""

import logging

from django.core.management.base import BaseCommand, CommandError

from campaign.models import Organization


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class CampaignCommand(BaseCommand):
    show_info_logs = False
    # A system-check warning (printed before the command runs) would add lines to stderr and break
    # the one-line contract; `manage.py check --deploy` is where the checks are run and read.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def error(message: str):
            # argparse prints its whole usage (several lines) before the error.
            if parser.called_from_command_line:
                parser.exit(2, f"{parser.prog}: error: {_one_line(message)} (see --help)\n")
            raise CommandError(f"Error: {_one_line(message)}", returncode=2)

        parser.error = error
        return parser

    def execute(self, *args, **options):
        previous = logging.root.manager.disable
        if not self.show_info_logs and options.get("verbosity", 1) < 2:
            logging.disable(max(previous, logging.INFO))
        try:
            return super().execute(*args, **options)
        except CommandError as error:
            raise CommandError(_one_line(str(error)), returncode=2) from None
        finally:
            logging.disable(previous)

    @staticmethod
    def organization(slug: str) -> Organization:
        """The organization a command names, or the one line every command answers without it."""
        found = Organization.objects.filter(slug=slug).first()
        if found is None:
            raise CommandError(f"No organization '{slug[:80]}' (create it with create_organization).")
        return found
