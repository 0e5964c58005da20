"""End to end: the real worker sends an organization's email through the organization's own SMTP
provider (its password encrypted by this process, opened by the worker), and after the provider is
changed here, the same worker, never restarted, sends the next email through the new server."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from campaign import services
from messages import org_providers
from messages.models import Delivery, OrganizationProvider
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.stack import flush_broker, http, stack_environment, start_web, start_worker, wait_until
from tests.factories import OrganizationFactory
from tests.smtp import SmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
FUTURE = (timezone.now() + dt.timedelta(days=30)).isoformat()
KEY = Fernet.generate_key().decode()


def test_the_worker_uses_the_organizations_provider_and_its_change_without_a_restart(settings, tmp_path):
    settings.ENCRYPTION_KEYS = [KEY]
    organization = OrganizationFactory(slug="geometrixx")
    publish_events(organization, copy.deepcopy(CART_EVENT))
    issued = services.create_api_credential(organization=organization)
    token = services.issue_access_token(api_key=issued.credential.api_key, client_secret=issued.client_secret)
    headers = {"Authorization": f"Bearer {token.access_token}", "X-Api-Key": issued.credential.api_key}
    with SmtpServer() as installation, SmtpServer() as first, SmtpServer() as second:
        provider = OrganizationProvider(
            organization=organization,
            name="own-smtp",
            kind="smtp",
            options={"host": "127.0.0.1", "port": first.port, "timeout": 5.0, "use_tls": False},
        )
        org_providers.save(provider, secrets={"password": "opened-by-the-worker"})  # no AUTH asked
        env = stack_environment(
            smtp_port=installation.port,
            var_dir=tmp_path,
            ENCRYPTION_KEYS=KEY,
            PROVIDER_ALLOW_PRIVATE_TARGETS="true",
            # The worker sees a change at its next check of the caches' generations: at every batch here.
            GENERATION_CHECK_SECONDS="0",
        )
        flush_broker()
        web, base = start_web(env, tmp_path)
        worker = start_worker(env, tmp_path)
        try:

            def post(email: str) -> str:
                body = {**copy.deepcopy(SEED_BODY), "scheduled": None, "expiration": FUTURE, "email": email}
                status, answer = http("POST", f"{base}{CART_URL}", body=body, headers=headers)
                assert status == 201, answer
                return answer["PKey"]

            post("one@example.com")
            assert first.mailbox.wait_for(1, timeout=60)[0].recipients == ["one@example.com"]
            provider.options = {**provider.options, "port": second.port}
            org_providers.save(provider)
            post("two@example.com")
            assert second.mailbox.wait_for(1, timeout=60)[0].recipients == ["two@example.com"]
            wait_until(
                lambda: Delivery.objects.filter(provider="own-smtp").count() == 2,
                timeout=30,
                what="two deliveries through the organization's provider",
            )
        finally:
            worker.stop()
            web.stop()
    assert len(first.mailbox.messages) == 1 and not installation.mailbox.messages
