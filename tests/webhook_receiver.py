"""A webhook receiver on loopback for the tests: records every request it gets, answers with the
status the test chooses, and can hold its answers (a request in flight) until released. It
verifies signatures with its own code, written from the Standard Webhooks specification, not with
the product's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verify(*, secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks: the signed content is "{webhook-id}.{webhook-timestamp}.{body}", the key
    the base64 part of the `whsec_` secret, the signature header a space-separated list of
    `v1,<base64 HMAC-SHA256>`; one match is enough."""
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for signature in headers["webhook-signature"].split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.status = 204
        self.released = threading.Event()
        self.released.set()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                length = int(self.headers.get("Content-Length") or 0)
                got = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                with receiver.arrived:
                    receiver.received.append(got)
                    receiver.arrived.notify_all()
                receiver.released.wait(60)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, condition, timeout: float = 30.0) -> list[Received]:
        """Wait until `condition(received)` holds (woken by each arrival); the requests so far."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: condition(self.received), timeout):
                raise AssertionError(
                    f"the receiver got {len(self.received)} request(s): not what was awaited"
                )
            return list(self.received)
