"""Fixtures of the end-to-end tests: the real stack (gunicorn, Celery worker + beat on Redis, SMTP)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.stack import Process, stack_processes_for, token_headers
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
        return token_headers(self.base_url, organization)


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack_processes(django_db_setup, django_db_blocker, smtp, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("stack")
    port = free_port()  # known before the processes start: their PUBLIC_URL (tracking links)
    yield from stack_processes_for(
        django_db_blocker,
        smtp_port=smtp.port,
        log_dir=log_dir,
        web_port=port,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
    )


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
