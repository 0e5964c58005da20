"""Settings read from the environment, as an operator sets them (each case in a fresh interpreter)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.EMAIL_BACKEND, getattr(s, 'EMAIL_HOST', ''), getattr(s, 'EMAIL_PORT', 0), "
    "s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['credential']]))"
)


def settings_with(tmp_path, **variables: str) -> list:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "API_RATE"))}
    env.update(DJANGO_SETTINGS_MODULE="campaign.settings", VAR_DIR=str(tmp_path), **variables)
    env.pop("DATABASE_URL", None)
    output = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(output.stdout)


@pytest.mark.parametrize(
    ("variables", "backend", "host", "port"),
    [
        ({}, "campaign.email_files.EmailBackend", None, None),
        ({"EMAIL_PORT": "1025"}, "django.core.mail.backends.smtp.EmailBackend", "localhost", 1025),
        ({"EMAIL_HOST": "mail.internal"}, "django.core.mail.backends.smtp.EmailBackend", "mail.internal", 25),
        (
            {"EMAIL_URL": "smtp://127.0.0.1:2525"},
            "django.core.mail.backends.smtp.EmailBackend",
            "127.0.0.1",
            2525,
        ),
    ],
)
def test_email_settings_choose_smtp_from_host_port_or_url(tmp_path, variables, backend, host, port):
    chosen_backend, chosen_host, chosen_port, _ = settings_with(tmp_path, **variables)
    assert chosen_backend == backend
    if host is not None:
        assert (chosen_host, chosen_port) == (host, port)


def test_the_api_is_not_rate_limited_unless_asked(tmp_path):
    assert settings_with(tmp_path)[3] is None
    assert settings_with(tmp_path, API_RATE_LIMIT="6000/min")[3] == "6000/min"
