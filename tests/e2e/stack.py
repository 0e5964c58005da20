"""The real stack for end-to-end tests: gunicorn and a Celery worker (with beat) as subprocesses,
Redis as the broker, the test database shared, and an SMTP server on loopback.

Two ways the tests start it: `stack_processes_for` (one web server, one worker with beat: the
module-scoped processes of conftest.py's `stack`, a module overriding settings of its own) and
`cluster` (the production layout: web servers, workers, one beat, as on several machines)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection

from tests.smtp import free_port
from tests.tools import missing_tool

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class RedisServer:
    """A Redis server of the test session's own, on a free loopback port: the broker of the stack's
    processes, which the tests may flush between stacks without touching anyone else's data."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            missing_tool("redis-server is not installed (the end-to-end tests need a real broker)")
        self.port = free_port()
        self.popen = subprocess.Popen(
            [executable, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.popen.poll() is not None:
                    raise AssertionError("the test Redis server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.popen.terminate()
        self.popen.wait(timeout=10)


_redis: RedisServer | None = None


def redis_url() -> str:
    """The URL of this test session's own Redis server, started on first use."""
    global _redis
    if _redis is None:
        _redis = RedisServer()
        atexit.register(_redis.stop)
    return _redis.url


def test_database_url() -> str:
    """The URL of the database this test session uses, for the subprocesses."""
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host, port = settings.get("HOST") or "127.0.0.1", settings.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


def stack_environment(*, smtp_port: int, var_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": redis_url(),
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "VAR_DIR": str(var_dir),
        "EVENT_LEASE_SECONDS": "3",
        "EVENT_RETRY_DELAY_SECONDS": "0.5",
        "EVENT_MAX_ATTEMPTS": "2",
        "EVENT_REENQUEUE_AFTER_SECONDS": "5",
        "SWEEP_INTERVAL_SECONDS": "0.5",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(overrides)
    return env


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(redis_url()).flushdb()  # our own server


class Process:
    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self) -> None:
        """SIGKILL the whole process group: no chance to finish anything."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def output(self, tail: int | None = 5000) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace")
        return text[-tail:] if tail else text


def start_worker(env: dict[str, str], log_dir: Path, name: str = "worker", *, beat: bool = True) -> Process:
    command = [
        str(BIN / "celery"),
        "-A",
        "campaign",
        "worker",
        "-l",
        "INFO",
        "-c",
        "2",
        "-n",
        f"{name}-{os.getpid()}@%h",
        "--without-mingle",
        "--without-gossip",
    ]
    if beat:
        command += ["--beat", "-s", str(log_dir / f"{name}-beat-schedule")]
    return Process(name, command, env, log_dir)


def start_beat(env: dict[str, str], log_dir: Path) -> Process:
    return Process(
        "beat",
        [str(BIN / "celery"), "-A", "campaign", "beat", "-l", "INFO", "-s", str(log_dir / "beat-schedule")],
        env,
        log_dir,
    )


def start_web(
    env: dict[str, str], log_dir: Path, name: str = "web", *, port: int | None = None
) -> tuple[Process, str]:
    port = port or free_port()
    process = Process(
        name,
        [
            str(BIN / "gunicorn"),
            "-c",
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "campaign.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
        ],
        env,
        log_dir,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: http("GET", f"{base}/healthz")[0] == 200, timeout=30, what="the web server", process=process
    )
    return process, base


def wait_until(condition, *, timeout: float, what: str, process: Process | None = None, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if process is not None and process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited while waiting for {what}:\n{process.output()}")
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" + (f":\n{process.output()}" if process else ""))


def http(method: str, url: str, *, body=None, headers=None, form=None) -> tuple[int, dict]:
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json;charset=utf-8")
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def token_headers(base_url: str, organization: Any) -> dict[str, str]:
    """The API's headers for a new credential of the organization: its key and an access token
    asked of the stack's own token endpoint (as an integration does)."""
    # Imported here: bench/run.py imports this module before Django is set up (models unloadable).
    from campaign import services as campaign_services

    issued = campaign_services.create_api_credential(organization=organization)
    status, answer = http(
        "POST",
        f"{base_url}/ims/token/v3",
        form={
            "grant_type": "client_credentials",
            "client_id": issued.credential.api_key,
            "client_secret": issued.client_secret,
        },
    )
    assert status == 200, answer
    return {
        "Authorization": f"Bearer {answer['access_token']}",
        "X-Api-Key": issued.credential.api_key,
        "Cache-Control": "no-cache",
    }


StackProcesses = tuple[dict[str, str], Path, str, Process, Process]


def stack_processes_for(
    django_db_blocker: Any, *, smtp_port: int, log_dir: Path, web_port: int | None = None, **overrides: str
) -> Iterator[StackProcesses]:
    """The body of a module-scoped `stack_processes` fixture (conftest.py's, or a module's own with
    settings `overrides`): a web server (on `web_port` when the settings must name it beforehand)
    and a worker with beat; yields (env, log_dir, base_url, web, worker), stops both at the end.
    Use as `yield from stack_processes_for(...)`."""
    with django_db_blocker.unblock():
        env = stack_environment(smtp_port=smtp_port, var_dir=log_dir, **overrides)
    flush_broker()
    web, base_url = start_web(env, log_dir, port=web_port)
    try:
        worker = start_worker(env, log_dir)
        try:
            yield env, log_dir, base_url, web, worker
        finally:
            worker.stop()
    finally:
        web.stop()


@dataclass
class Cluster:
    """Processes of the production layout, on this machine."""

    env: dict[str, str]
    webs: list[Process]
    bases: list[str]  # each web server's base URL, in the order of `webs`
    workers: list[Process]
    beat: Process

    @property
    def base(self) -> str:
        return self.bases[0]

    def logs(self) -> dict[str, str]:
        """Every process's whole log, by its name."""
        return {p.name: p.output(tail=None) for p in [*self.webs, *self.workers, self.beat]}


@contextmanager
def cluster(
    log_dir: Path,
    *,
    smtp_port: int,
    webs: Sequence[str] = ("web",),
    workers: Sequence[str] = ("worker-a", "worker-b"),
    **overrides: str,
) -> Iterator[Cluster]:
    """Web servers and workers as on several machines, sharing the test database and this
    session's Redis, and a single beat (the sweep) started once every worker is ready, so that
    every worker takes part from the first event. Every process stops at the end, whatever happened."""
    env = stack_environment(smtp_port=smtp_port, var_dir=log_dir, **overrides)
    flush_broker()
    started: list[Process] = []
    try:
        bases = []
        for name in webs:
            web, base = start_web(env, log_dir, name)
            started.append(web)
            bases.append(base)
        for name in workers:
            started.append(start_worker(env, log_dir, name, beat=False))
        running = started[len(webs) :]
        for worker in running:
            wait_until(lambda w=worker: " ready." in w.output(), timeout=60, what=worker.name, process=worker)
        beat = start_beat(env, log_dir)
        started.append(beat)
        yield Cluster(env=env, webs=started[: len(webs)], bases=bases, workers=running, beat=beat)
    finally:
        for process in started:
            process.stop()
