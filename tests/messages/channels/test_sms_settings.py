"""The SMPP and Twilio settings as an operator sets them, kept within their bounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.SMPP_PORT, s.SMPP_TIMEOUT_SECONDS, s.TWILIO_TIMEOUT_SECONDS, s.TWILIO_BASE_URL]))"
)


def settings_with(tmp_path, **variables: str) -> list:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMPP_", "TWILIO_"))}
    env.update(DJANGO_SETTINGS_MODULE="campaign.settings", VAR_DIR=str(tmp_path), **variables)
    env.pop("DATABASE_URL", None)
    output = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(output.stdout)


def test_the_defaults_and_the_bounds(tmp_path):
    assert settings_with(tmp_path) == [2775, 10.0, 10.0, "https://api.twilio.com"]
    low = settings_with(tmp_path, SMPP_PORT="0", SMPP_TIMEOUT_SECONDS="0", TWILIO_TIMEOUT_SECONDS="0")
    assert low[:3] == [1, 0.1, 0.1]
    high = settings_with(
        tmp_path, SMPP_PORT="99999", SMPP_TIMEOUT_SECONDS="100000", TWILIO_TIMEOUT_SECONDS="100000"
    )
    assert high[:3] == [65535, 120.0, 60.0]
