"""SECRET_KEY as an operator meets it: every process refuses a placeholder or short key with one line,
and a fresh checkout works with a key generated once under var/ that `check --deploy` refuses."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLE_ENV = ROOT / "deploy" / "production.env.example"
SHOW_KEY = (
    "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'campaign.settings'); "
    "django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
)


def clean_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """This machine's environment without any of our settings: a fresh shell on a fresh clone."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "SECRET_KEY",
            "DEBUG",
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "CACHE_URL",
            "EMAIL_URL",
            "PROMETHEUS_MULTIPROC_DIR",
            "DJANGO_SETTINGS_MODULE",
            "ENV_FILE",
        )
    }
    env.update(VAR_DIR=str(tmp_path / "var"), **variables)
    return env


def run(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


PROCESSES = {
    "gunicorn": [str(BIN / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "campaign.wsgi"],
    "celery worker": [str(BIN / "celery"), "-A", "campaign", "worker"],
    "manage.py migrate": [sys.executable, "manage.py", "migrate"],
}


@pytest.mark.parametrize("process", PROCESSES)
def test_the_example_env_files_placeholder_key_stops_every_process_with_one_line(tmp_path, process):
    # The operator copied deploy/production.env.example and forgot SECRET_KEY: DEBUG is off there.
    env = clean_environment(tmp_path, ENV_FILE=str(EXAMPLE_ENV), BIND="127.0.0.1:0")
    # Run from elsewhere, as a systemd unit may: gunicorn's config finds the checkout by itself.
    answer = run(PROCESSES[process], env, cwd=tmp_path if process == "gunicorn" else ROOT)
    assert answer.returncode == 3
    assert answer.stderr.splitlines() == [answer.stderr.strip()], answer.stderr
    assert answer.stderr.startswith("SECRET_KEY is a placeholder: set it to 50 or more random characters")
    assert "Traceback" not in answer.stderr + answer.stdout
    assert not (tmp_path / "var" / "campaign.sqlite3").exists()  # migrate did nothing


def test_even_a_bare_gunicorn_stops_instead_of_restarting_its_workers(tmp_path):
    # Without deploy/gunicorn.conf.py the settings load in a worker: its exit code 3 stops the master.
    env = clean_environment(tmp_path, SECRET_KEY="change-me-to-50-random-characters")
    command = [str(BIN / "gunicorn"), "-w", "1", "-b", "127.0.0.1:0", "campaign.wsgi"]
    answer = run(command, env)  # a worker restarted forever would end in a timeout here
    assert answer.returncode == 3
    assert answer.stderr.count("SECRET_KEY is a placeholder") == 1
    assert "Reason: Worker failed to boot." in answer.stderr


def test_a_short_key_stops_a_command_unless_debug_is_on(tmp_path):
    short = "x7-" * 10
    refused = run([sys.executable, "manage.py", "check"], clean_environment(tmp_path, SECRET_KEY=short))
    assert refused.returncode == 3
    assert refused.stderr.strip().splitlines() == [
        "SECRET_KEY has 30 characters: set it to 50 or more random characters, the same on every machine "
        "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(50))')"
    ]
    accepted = run(
        [sys.executable, "manage.py", "check"], clean_environment(tmp_path, SECRET_KEY=short, DEBUG="true")
    )
    assert accepted.returncode == 0, accepted.stderr


def test_a_fresh_checkout_generates_a_private_key_once_and_keeps_it(tmp_path):
    env = clean_environment(tmp_path)
    first = run([sys.executable, "-c", SHOW_KEY], env)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "var" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = first.stdout.strip()
    assert len(key) >= 50 and key_file.read_text().strip() == key
    again = run([sys.executable, "-c", SHOW_KEY], env)
    assert again.stdout.strip() == key
    elsewhere = run([sys.executable, "-c", SHOW_KEY], clean_environment(tmp_path / "other"))
    assert elsewhere.stdout.strip() != key  # random, not a key of the repository


def test_check_deploy_fails_on_a_generated_key(tmp_path):
    answer = run([sys.executable, "manage.py", "check", "--deploy"], clean_environment(tmp_path))
    assert answer.returncode != 0
    assert "(campaign.E001) SECRET_KEY was generated on this machine" in answer.stderr
