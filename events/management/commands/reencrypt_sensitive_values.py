"""`manage.py reencrypt_sensitive_values`: the events' sensitive values (events.sensitive) encrypted
again under the first key of ENCRYPTION_KEYS, the step of a key rotation before the old key is
dropped (as `reencrypt_webhook_secrets` does for the webhook secrets)."""

from django.core.management.base import CommandError

from campaign.cli import CampaignCommand
from campaign.encryption import InvalidToken
from events import sensitive


class Command(CampaignCommand):
    help = (
        "Encrypt every event's sensitive values again under the first key of ENCRYPTION_KEYS "
        "(a rotation: put the new key first, run this and reencrypt_webhook_secrets, then drop the old key)."
    )

    def handle(self, *args, **options):
        try:
            count = sensitive.reencrypt_values()
        except InvalidToken:
            raise CommandError(
                "An event's sensitive values open with no key of ENCRYPTION_KEYS: keep the old key in the "
                "list until this runs."
            ) from None
        self.stdout.write(f"{count} event(s) with sensitive values encrypted with the first key")
