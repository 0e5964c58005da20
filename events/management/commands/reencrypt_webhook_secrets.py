"""`manage.py reencrypt_webhook_secrets`: the endpoints' signing secrets encrypted again under the
first key of ENCRYPTION_KEYS, the step of a key rotation before the old key is dropped."""

from django.core.management.base import CommandError

from campaign.cli import CampaignCommand
from campaign.encryption import InvalidToken
from events import webhooks


class Command(CampaignCommand):
    help = (
        "Encrypt every webhook endpoint's secret again under the first key of ENCRYPTION_KEYS "
        "(a rotation: put the new key first, run this, then drop the old key)."
    )

    def handle(self, *args, **options):
        try:
            count = webhooks.reencrypt_secrets()
        except InvalidToken:
            raise CommandError(
                "A secret opens with no key of ENCRYPTION_KEYS: keep the old key in the list until this runs."
            ) from None
        self.stdout.write(f"{count} webhook secret(s) encrypted with the first key")
