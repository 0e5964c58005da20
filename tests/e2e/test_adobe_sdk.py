"""Adobe's own Node SDK (`@adobe/aio-lib-campaign-standard`, npm), unchanged, against the real stack.

`npm ci` installs it from the lock file in tests/e2e/sdk/; the only edit is the one the README
shows for any self-hosted server: the server URL of the SDK's OpenAPI document.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from events.models import Event
from tests.conftest import CART_EVENT, SEED_BODY, publish_events

pytestmark = [pytest.mark.e2e]
SDK_DIR = Path(__file__).parent / "sdk"
SDK_PACKAGE = Path("node_modules/@adobe/aio-lib-campaign-standard")


class AdobeSdk:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.spec = directory / SDK_PACKAGE / "spec" / "api.json"

    def point_at(self, base_url: str) -> None:
        """The README's two lines: replace `servers[0].url` of the SDK's OpenAPI document."""
        document = json.loads(self.spec.read_text())
        document["servers"][0]["url"] = f"{base_url}/{{ORGANIZATION}}/campaign"
        self.spec.write_text(json.dumps(document))

    def code_digest(self) -> str:
        digest = hashlib.sha256()
        for path in sorted((self.directory / SDK_PACKAGE / "src").rglob("*.js")):
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def send_and_read(
        self, *, organization: str, api_key: str, token: str, event_id: str, body: dict
    ) -> dict:
        completed = subprocess.run(
            ["node", "drive.js"],
            cwd=self.directory,
            env={
                **os.environ,
                "SDK_ORG": organization,
                "SDK_API_KEY": api_key,
                "SDK_TOKEN": token,
                "SDK_EVENT_ID": event_id,
                "SDK_BODY": json.dumps(body),
                "SDK_TIMEOUT_MS": "30000",
            },
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)


@pytest.fixture(scope="module")
def adobe_sdk(tmp_path_factory) -> AdobeSdk:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js and npm are needed to run Adobe's SDK (they are on every machine of ours)")
    directory = tmp_path_factory.mktemp("adobe-sdk")
    for name in ("package.json", "package-lock.json", "drive.js"):
        shutil.copy(SDK_DIR / name, directory / name)
    completed = subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return AdobeSdk(directory)


def test_adobes_node_sdk_sends_the_seed_and_reads_it_until_processed(stack, geometrixx, adobe_sdk):
    publish_events(geometrixx, copy.deepcopy(CART_EVENT))
    headers = stack.token_headers(geometrixx)
    token = headers["Authorization"].removeprefix("Bearer ")
    code_before = adobe_sdk.code_digest()
    adobe_sdk.point_at(stack.base_url)
    body = {k: v for k, v in copy.deepcopy(SEED_BODY).items() if k not in ("scheduled", "expiration")}

    result = adobe_sdk.send_and_read(
        organization="geometrixx",
        api_key=headers["X-Api-Key"],
        token=token,
        event_id="EVTcartAbandonment",
        body=body,
    )

    sent, last = result["sent"], result["last"]
    assert sent["status"] == 201 and sent["body"]["status"] == "pending"
    assert sent["body"]["ctx"] == SEED_BODY["ctx"] and sent["body"]["email"] == "test@example.com"
    assert last["status"] == 200 and last["body"]["PKey"] == sent["body"]["PKey"]
    assert last["body"]["status"] == "processed", result["reads"]
    assert Event.objects.get(pkey=sent["body"]["PKey"]).status == "processed"
    (received,) = stack.mailbox.wait_for(1)
    assert received.recipients == ["test@example.com"]
    assert received.subject == "Jack, your cart is waiting"
    assert "Leather motorbike jacket" in received.part("text/html")
    assert adobe_sdk.code_digest() == code_before  # the SDK's code is not touched
