"""deploy/ and the lock files, as the README's production section uses them."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))


def production_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The example env file as an operator fills it in: a real key; local paths instead of /var, /run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_", "EMAIL_"))}
    env.pop("CELERY_BROKER_URL", None)
    env.pop("CACHE_URL", None)
    env.update(
        {
            "ENV_FILE": str(DEPLOY / "production.env.example"),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "VAR_DIR": str(tmp_path / "var"),
            "STATIC_ROOT": str(tmp_path / "static"),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
            **variables,
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_the_example_env_file_and_a_real_key(tmp_path):
    answer = manage(production_environment(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "System check identified no issues (0 silenced)."


def test_settings_come_from_the_env_file_and_the_process_environment_wins(tmp_path):
    show = (
        "from django.conf import settings as s; print(s.PUBLIC_URL, s.ALLOWED_HOSTS, s.SECURE_HSTS_PRELOAD)"
    )
    env = production_environment(tmp_path, ALLOWED_HOSTS="other.example.com")
    answer = manage(env, "shell", "--no-imports", "--command", show)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "https://campaign.example.com ['other.example.com'] True"


def test_an_env_file_that_cannot_be_read_stops_a_command_with_one_line(tmp_path):
    answer = manage(production_environment(tmp_path, ENV_FILE=str(tmp_path / "missing.env")), "check")
    assert answer.returncode == 3
    assert answer.stderr.strip().splitlines() == [
        f"ENV_FILE {tmp_path / 'missing.env'} cannot be read (missing, or not readable by this user)"
    ]


def pinned(lock: Path) -> set[str]:
    names = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==", lock.read_text(), re.M)
    return {re.sub(r"[-_.]+", "-", name).lower() for name in names}


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", r).group(0)).lower() for r in requirements}


def gunicorn_settings(env: dict[str, str], *names: str) -> list:
    """What deploy/gunicorn.conf.py sets, read as gunicorn reads it (a fresh process: it loads settings)."""
    code = (
        "import json, runpy; c = runpy.run_path('deploy/gunicorn.conf.py'); "
        f"print(json.dumps([c[n] for n in {names!r}]))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def test_gunicorn_recycles_no_worker_unless_max_requests_is_set(tmp_path):
    # A retiring worker closes the keep-alive connections it holds: a client sending on one at that
    # instant loses its POST (the bench saw it at 100 and 200 events/s). So no recycling by default.
    names = ("max_requests", "max_requests_jitter")
    assert gunicorn_settings(production_environment(tmp_path), *names) == [0, 0]
    assert gunicorn_settings(production_environment(tmp_path, MAX_REQUESTS=""), *names) == [0, 0]
    assert gunicorn_settings(production_environment(tmp_path, MAX_REQUESTS="10000"), *names) == [10000, 1000]


def test_the_lock_files_pin_every_dependency_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    production, development = ROOT / "requirements.lock", ROOT / "requirements-dev.lock"
    missing = requirement_names(project["dependencies"]) - pinned(production)
    assert not missing, f"run `make lock`: {sorted(missing)} not in requirements.lock"
    dev = requirement_names(project["dependencies"] + project["optional-dependencies"]["dev"])
    assert not dev - pinned(development), f"run `make lock`: {sorted(dev - pinned(development))}"
    for lock in (production, development):
        requirements = [line for line in lock.read_text().splitlines() if re.match(r"[A-Za-z0-9]", line)]
        assert all("==" in line and line.endswith("\\") for line in requirements), lock.name  # hashes follow


def test_each_process_of_the_readme_has_a_systemd_unit():
    commands = {unit.name: re.search(r"^ExecStart=(.*)$", unit.read_text(), re.M).group(1) for unit in UNITS}
    assert commands == {
        "campaign-beat.service": "/opt/campaign/.venv/bin/celery -A campaign beat --loglevel INFO "
        "--schedule /var/lib/campaign/celerybeat-schedule",
        "campaign-web.service": "/opt/campaign/.venv/bin/gunicorn -c deploy/gunicorn.conf.py campaign.wsgi",
        "campaign-worker.service": "/opt/campaign/.venv/bin/celery -A campaign worker "
        "-Q transactional,default --loglevel INFO",
    }
    for unit in UNITS:
        text = unit.read_text()
        assert "Environment=ENV_FILE=/etc/campaign/campaign.env" in text and "User=campaign" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path):
    # As installed: the checkout in /opt/campaign; here, this checkout and this virtualenv.
    for unit in UNITS:
        text = unit.read_text().replace("/opt/campaign/.venv/bin/", f"{Path(sys.executable).parent}/")
        (tmp_path / unit.name).write_text(text.replace("/opt/campaign", str(ROOT)))
    answer = subprocess.run(
        ["systemd-analyze", "verify", *[str(tmp_path / unit.name) for unit in UNITS]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0 and answer.stderr == "", answer.stderr
