"""The README's first command, tried as a new user would: the demo comes up on the embedded
default (SQLite, filesystem broker, emails as files), and its printed curl becomes an email."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.smtp import free_port
from tests.tools import missing_tool

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e]


def test_demo_starts_and_its_printed_curl_becomes_a_visible_email(tmp_path):
    if shutil.which("curl") is None:
        missing_tool("the demo prints a curl command; curl is not installed")
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "EMAIL_URL",
            "DJANGO_SETTINGS_MODULE",
            "PROMETHEUS_MULTIPROC_DIR",
        )
    }
    env.update(VAR_DIR=str(tmp_path), PYTHONUNBUFFERED="1", SWEEP_INTERVAL_SECONDS="1")
    log = open(tmp_path / "demo.log", "w+")  # noqa: SIM115 - closed below
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        output = ""
        while "Ready:" not in output:
            assert time.monotonic() < deadline, f"the demo did not get ready:\n{output[-3000:]}"
            assert demo.poll() is None, f"the demo exited:\n{output[-3000:]}"
            time.sleep(0.3)
            output = (tmp_path / "demo.log").read_text()
        assert re.search(r"administrator\s+admin / \S+", output) and re.search(
            r"marketer\s+marketer / \S+", output
        )
        curl = re.search(r"^curl -X POST .*?^}'$", output, re.S | re.M).group(0)
        answer = json.loads(
            subprocess.run(["bash", "-c", curl + " -s"], capture_output=True, text=True, timeout=30).stdout
        )
        assert answer["status"] == "pending"
        get = re.search(r"^Then GET its status: (curl .*?)$\n(.*?)$", output, re.M)
        get_command = (get.group(1).rstrip("\\") + get.group(2)).replace("<PKey>", answer["PKey"])
        status = ""
        while status != "processed":
            assert time.monotonic() < deadline, (
                f"the event stayed {status}:\n{(tmp_path / 'demo.log').read_text()}"
            )
            time.sleep(0.5)
            status = json.loads(
                subprocess.run(
                    ["bash", "-c", get_command + " -s"], capture_output=True, text=True, timeout=30
                ).stdout
            )["status"]
        mails = list((tmp_path / "mail").glob("*.eml"))
        assert len(mails) == 1
        sent = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default)
        assert sent["To"] == "test@example.com" and sent["Subject"] == "Jack, your cart is waiting"
        assert sent["Reply-To"] == "help@geometrixx.example"
        assert "Leather motorbike jacket" in sent.get_body(("plain",)).get_content()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5) as page:
            assert page.status == 200
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            raise AssertionError("Ctrl-C did not stop the demo within 30 s") from None
        log.close()
    assert "Demo stopped." in (tmp_path / "demo.log").read_text()
