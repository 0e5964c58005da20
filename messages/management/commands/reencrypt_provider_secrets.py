"""`manage.py reencrypt_provider_secrets`: the organizations' provider secrets (passwords, tokens,
service account keys) encrypted again under the first key of ENCRYPTION_KEYS, the step of a key
rotation before the old key is dropped (with `reencrypt_webhook_secrets`)."""

from django.core.management.base import CommandError

from campaign.cli import CampaignCommand
from campaign.encryption import InvalidToken
from messages import org_providers


class Command(CampaignCommand):
    help = (
        "Encrypt every organization provider's secrets again under the first key of ENCRYPTION_KEYS "
        "(a rotation: put the new key first, run this and reencrypt_webhook_secrets, then drop the old key)."
    )

    def handle(self, *args, **options):
        try:
            count = org_providers.reencrypt_secrets()
        except InvalidToken:
            raise CommandError(
                "A secret opens with no key of ENCRYPTION_KEYS: keep the old key in the list until this runs."
            ) from None
        self.stdout.write(f"{count} provider secret(s) encrypted with the first key")
