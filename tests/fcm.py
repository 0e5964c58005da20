"""A fake Google OAuth token endpoint and a fake FCM HTTP v1 endpoint, on loopback, in a thread; and a
service account's JSON made with a fresh RSA key whose token_uri points at the fake."""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT = "demo-project"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def fcm_error(status: int, code: str, message: str, *, field_name: str = "") -> Answer:
    """An error as FCM v1 answers it: google.rpc.Status with an FcmError detail."""
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
    ]
    if field_name:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field_name, "description": message}],
            }
        )
    status_name = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
    }
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": status_name.get(status, code),
            "details": details,
        }
    }
    return Answer(status, body)


class FakeGoogle:
    """Both endpoints on one server: POST /token (the JWT-bearer grant) and POST
    /v1/projects/<id>/messages:send. `answers`: what the next sends get (then 200)."""

    def __init__(self) -> None:
        self.assertions: list[str] = []
        self.sends: list[dict[str, Any]] = []  # {"path", "authorization", "body"}
        self.answers: list[Answer] = []
        self.issued = 0
        self.token_status = 200  # another: the token endpoint answers it (google-auth retries a 5xx)
        self.token_requests = 0
        self.lock = threading.Lock()
        self.sent = threading.Condition(self.lock)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if self.path == "/token" and fake.token_status != 200:
                    with fake.lock:
                        fake.token_requests += 1
                    self._answer(Answer(fake.token_status, {"error": "temporarily_unavailable"}))
                    return
                if self.path == "/token":
                    form = urllib.parse.parse_qs(raw)
                    with fake.lock:
                        fake.assertions.append(form["assertion"][0])
                        fake.issued += 1
                        token = f"access-{fake.issued}"
                    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
                    self._answer(
                        Answer(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})
                    )
                    return
                with fake.lock:
                    fake.sends.append(
                        {
                            "path": self.path,
                            "authorization": self.headers.get("Authorization"),
                            "body": json.loads(raw),
                        }
                    )
                    answer = (
                        fake.answers.pop(0)
                        if fake.answers
                        else Answer(200, {"name": f"projects/{PROJECT}/messages/{len(fake.sends)}"})
                    )
                    fake.sent.notify_all()
                self._answer(answer)

            def _answer(self, answer: Answer) -> None:
                data = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.service_account = {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "key-1",
            "private_key": key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            "client_email": f"fcm-sender@{PROJECT}.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": f"{self.base_url}/token",
        }

    def wait_for_sends(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        with self.sent:
            if not self.sent.wait_for(lambda: len(self.sends) >= count, timeout=timeout):
                raise AssertionError(f"FCM got {len(self.sends)} send(s), not {count}")
            return list(self.sends)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def use_fake(settings: Any, fake: FakeGoogle) -> None:
    """Point the push channel at the fake: FCM's backend, the service account, the base URL."""
    from messages.channels import backend_for

    settings.PUSH_BACKEND = "messages.channels.push.FcmPushBackend"
    settings.FCM_SERVICE_ACCOUNT_JSON = json.dumps(fake.service_account)
    settings.FCM_SERVICE_ACCOUNT_FILE = ""
    settings.FCM_PROJECT_ID = ""
    settings.FCM_BASE_URL = fake.base_url
    backend_for.cache_clear()
