"""A real SMTP server on loopback (aiosmtpd) for tests and benchmarks.

Recipients steer its answers: `reject...@` gets a permanent 550, `tempfail...@` a temporary 451,
`flaky...@` a temporary 451 the first time only (a retry goes through), and `slow...@` makes the
first RCPT to it wait `slow_seconds` (to kill a worker in the middle of a send).
`data_seconds` makes every DATA wait that long before its answer, and `most_in_data` counts the
most conversations it had in DATA at once (sends overlapping); `on_data` is called at each DATA.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


@dataclass
class ReceivedMessage:
    sender: str
    recipients: list[str]
    message: email.message.EmailMessage
    received_at: float

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, content_type: str) -> str:
        for part in self.message.walk():
            if part.get_content_type() == content_type:
                return part.get_content()
        return ""


@dataclass
class Mailbox:
    messages: list[ReceivedMessage] = field(default_factory=list)
    slow_seconds: float = 5.0
    slowed: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    data_seconds: float = 0.0
    in_data: int = 0
    most_in_data: int = 0
    on_data: Callable[[], None] | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 No such user here"
        if local.startswith("tempfail"):
            return "451 4.3.0 Try again later"
        if local.startswith("flaky") and address not in self.refused:
            self.refused.add(address)  # refused the first time only
            return "451 4.3.0 Try again later"
        if local.startswith("slow") and address not in self.slowed:
            self.slowed.add(address)  # slow the first time only, so a retry goes through
            await asyncio.sleep(self.slow_seconds)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.in_data += 1
            self.most_in_data = max(self.most_in_data, self.in_data)
        if self.on_data is not None:
            self.on_data()
        try:
            if self.data_seconds:
                await asyncio.sleep(self.data_seconds)
        finally:
            with self.lock:
                self.in_data -= 1
        with self.lock:
            self.messages.append(
                ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos), parsed, time.time())
            )
        return "250 Message accepted for delivery"

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.slowed.clear()
            self.refused.clear()

    def to(self, address: str) -> list[ReceivedMessage]:
        with self.lock:
            return [m for m in self.messages if address in m.recipients]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    def __init__(self) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"
