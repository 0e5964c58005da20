"""`manage.py purge [--dry-run]`: deletes the history past its retention now (the beat does it in
bounded runs), one line per table: `events.Event: 120 deleted` (or `... to delete` with --dry-run)."""

from campaign.cli import CampaignCommand
from events import retention


class Command(CampaignCommand):
    help = (
        "Delete the events, deliveries, opens and clicks past their retention (*_RETENTION_DAYS; "
        "rollups are kept). --dry-run counts them and deletes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would go; delete nothing.")

    def handle(self, *args, dry_run: bool, **options):
        if dry_run:
            for label, count in retention.count_purgeable().items():
                self.stdout.write(f"{label}: {count} to delete")
            return
        for label, count in retention.purge().items():
            self.stdout.write(f"{label}: {count} deleted")
