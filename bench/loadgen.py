"""An asyncio HTTP/1.1 load generator with keep-alive connections and no dependencies.

Closed loop (`closed_loop`): C clients each send a request, wait for the answer, send the next:
accepted requests per second and latency at concurrency C. Open loop (`open_loop`): requests leave
at a fixed rate whatever the answers, as a website's traffic does: what end-to-end latency is
measured at. It runs in its own process so that it never shares an interpreter with a server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Request:
    path: str
    body: bytes
    headers: dict[str, str]
    method: str = "POST"


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, answers with the expected status
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)  # what failed: an exception's name or a status
    elapsed: float = 0.0
    sent_at: dict[str, float] = field(default_factory=dict)  # token -> wall-clock send time (open loop)

    def failed(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: Request) -> int:
        """Send one request and read its whole answer; return the status code."""
        if self.reader is not None and self.reader.at_eof():
            # The server closed this kept-alive connection while it was idle (gunicorn's `keepalive`
            # seconds): a real client (urllib3, Node's agent) sees that and opens another.
            self.close()
        if self.writer is None:
            await self._open()
        assert self.reader is not None and self.writer is not None
        head = [f"{request.method} {request.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in request.headers.items()]
        head.append(f"Content-Length: {len(request.body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + request.body)
        try:
            status_and_headers = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()  # the server closed a kept-alive connection (e.g. a worker's max_requests)
            raise
        lines = status_and_headers.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status


async def _timed_send(connection: Connection, request: Request, expect: int, result: LoadResult) -> bool:
    """Send, record the latency of an expected answer (anything else is an error); return whether
    the connection can carry the next request."""
    started = time.perf_counter()
    try:
        status = await connection.send(request)
    except (OSError, asyncio.IncompleteReadError) as error:
        result.failed(type(error).__name__)
        return False
    if status == expect:
        result.latencies.append(time.perf_counter() - started)
    else:
        result.failed(str(status))
    return True


async def _closed_loop(host, port, make_request, concurrency, duration, expect) -> LoadResult:
    result = LoadResult()
    deadline = time.monotonic() + duration

    async def client(number: int) -> None:
        connection = Connection(host, port)
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            await _timed_send(connection, make_request(f"c{number}-{sequence}"), expect, result)
        connection.close()

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(concurrency)))
    result.elapsed = time.monotonic() - started
    return result


async def _open_loop(host, port, make_request, rate, duration, expect, token_prefix) -> LoadResult:
    result = LoadResult()
    idle: list[Connection] = []
    pending: set[asyncio.Task] = set()

    async def fire(token: str) -> None:
        connection = idle.pop() if idle else Connection(host, port)
        request = make_request(token)
        result.sent_at[token] = time.time()
        if await _timed_send(connection, request, expect, result):
            idle.append(connection)

    total = int(rate * duration)
    started = time.monotonic()
    for number in range(total):
        delay = started + number / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(fire(f"{token_prefix}-{number}"))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    result.elapsed = time.monotonic() - started
    for connection in idle:
        connection.close()
    return result


def closed_loop(
    host: str,
    port: int,
    make_request: Callable[[str], Request],
    *,
    concurrency: int,
    duration: float,
    expect: int = 201,
) -> LoadResult:
    return asyncio.run(_closed_loop(host, port, make_request, concurrency, duration, expect))


def open_loop(
    host: str,
    port: int,
    make_request: Callable[[str], Request],
    *,
    rate: float,
    duration: float,
    token_prefix: str,
    expect: int = 201,
) -> LoadResult:
    return asyncio.run(_open_loop(host, port, make_request, rate, duration, expect, token_prefix))
