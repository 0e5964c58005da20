"""A fake Postmark API on loopback (POST /email answers as Postmark does, with a MessageID), and
Postmark's documented bounce and spam complaint webhook payloads, for anymail's Postmark backend and
its tracking webhook (`python tests/postmark.py PORT` serves it alone, for the end-to-end tests)."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "server-token-for-tests"


class FakePostmark:
    """Accepts each email sent to it and keeps it (`sent`: the JSON body, with the MessageID given)."""

    def __init__(self, port: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
        # An answer of Postmark's other than OK, by recipient: (HTTP status, ErrorCode, Message).
        self.refusals: dict[str, tuple[int, int, str]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.headers.get("X-Postmark-Server-Token") != TOKEN:
                    self._answer(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token"})
                    return
                refusal = fake.refusals.get(body.get("To", ""))
                if refusal is not None:
                    self._answer(refusal[0], {"ErrorCode": refusal[1], "Message": refusal[2]})
                    return
                message_id = str(uuid.uuid4())
                fake.sent.append({**body, "MessageID": message_id})
                self._answer(
                    200,
                    {
                        "To": body.get("To", ""),
                        "SubmittedAt": "2026-11-29T22:00:00.0000000Z",
                        "MessageID": message_id,
                        "ErrorCode": 0,
                        "Message": "OK",
                    },
                )

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakePostmark:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def bounce(
    *, message_id: str, email: str, bounce_id: int = 4323372036854775807, kind: str = "HardBounce"
) -> dict:
    """Postmark's bounce webhook, as its documentation shows it."""
    names = {
        "HardBounce": (
            1,
            "Hard bounce",
            "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        ),
        "SoftBounce": (4096, "Soft bounce", "Unable to temporarily deliver this email."),
    }
    code, name, description = names[kind]
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": bounce_id,
        "Type": kind,
        "TypeCode": code,
        "Name": name,
        "Tag": "Test",
        "MessageID": message_id,
        "Metadata": {},
        "ServerID": 23,
        "Description": description,
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "sender@example.com",
        "BouncedAt": "2026-11-29T22:05:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": kind == "HardBounce",
        "CanActivate": True,
        "Subject": "Test subject",
        "Content": "<Full dump of bounce>",
    }


def spam_complaint(*, message_id: str, email: str, complaint_id: int = 42) -> dict:
    """Postmark's spam complaint webhook, as its documentation shows it."""
    return {
        "RecordType": "SpamComplaint",
        "MessageStream": "outbound",
        "ID": complaint_id,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "Test",
        "MessageID": message_id,
        "Metadata": {},
        "ServerID": 1234,
        "Description": "The subscriber explicitly marked this email as spam.",
        "Details": "Test spam complaint details",
        "Email": email,
        "From": "sender@example.com",
        "BouncedAt": "2026-11-29T22:07:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "Test subject",
        "Content": "<Abuse report dump>",
    }


if __name__ == "__main__":
    with FakePostmark(int(sys.argv[1])) as served:
        print(served.url, flush=True)
        threading.Event().wait()
