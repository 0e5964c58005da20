"""A fake of Twilio's REST API on loopback: it keeps each POSTed form and answers as Twilio does."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SID, TOKEN = "AC" + "0" * 32, "twilio-auth-token"


class FakeTwilio:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answer: tuple[int, dict] = (201, {"sid": "SM1", "status": "queued"})
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                fake.requests.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("Authorization", ""),
                        "form": dict(urllib.parse.parse_qsl(body)),
                    }
                )
                status, payload = fake.answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
