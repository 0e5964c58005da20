"""Fixtures of the end-to-end tests: the real stack (gunicorn, Celery worker + beat on Redis, SMTP)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from campaign import services as campaign_services
from tests.e2e.stack import Process, flush_broker, http, stack_environment, start_web, start_worker
from tests.factories import OrganizationFactory
from tests.smtp import Mailbox, SmtpServer, free_port


@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    log_dir: Path
    mailbox: Mailbox
    worker: Process

    def token_headers(self, organization) -> dict[str, str]:
        issued = campaign_services.create_api_credential(organization=organization)
        status, answer = http(
            "POST",
            f"{self.base_url}/ims/token/v3",
            form={
                "grant_type": "client_credentials",
                "client_id": issued.credential.api_key,
                "client_secret": issued.client_secret,
            },
        )
        assert status == 200, answer
        return {
            "Authorization": f"Bearer {answer['access_token']}",
            "X-Api-Key": issued.credential.api_key,
            "Cache-Control": "no-cache",
        }


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack_processes(django_db_setup, django_db_blocker, smtp, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("stack")
    port = free_port()  # known before the processes start: their PUBLIC_URL (tracking links)
    with django_db_blocker.unblock():
        env = stack_environment(smtp_port=smtp.port, var_dir=log_dir, PUBLIC_URL=f"http://127.0.0.1:{port}")
    flush_broker()
    web, base_url = start_web(env, log_dir, port=port)
    worker = start_worker(env, log_dir)
    yield env, log_dir, base_url, web, worker
    worker.stop()
    web.stop()


@pytest.fixture
def stack(transactional_db, stack_processes, smtp):
    env, log_dir, base_url, web, worker = stack_processes
    smtp.mailbox.clear()
    yield Stack(base_url=base_url, env=env, log_dir=log_dir, mailbox=smtp.mailbox, worker=worker)


@pytest.fixture
def geometrixx(transactional_db):
    return OrganizationFactory(slug="geometrixx", name="Geometrixx")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (`report_call`...), for fixtures that act on a failure
    (the browser tests' screenshots)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
