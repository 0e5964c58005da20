#!/usr/bin/env python
"""`make bench`: the platform on PostgreSQL + Redis + gunicorn + Celery, measured beside its floors.

Prints one table: ingest (events/s and POST latency at several concurrencies, beside a bare Django
view inserting the same row and pgbench inserting it), end to end (POST -> SMTP acceptance at fixed
rates) and worker throughput (beside django-post-office sending the same emails to the same SMTP
server). Everything runs on this machine, in this run; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
OUT = ROOT / "var" / "bench"

from bench.cpu import CpuMeter, postgres_root  # noqa: E402
from bench.loadgen import LoadResult, Request, closed_loop, open_loop  # noqa: E402
from tests.e2e.stack import Process, wait_until  # noqa: E402 - the end-to-end tests' process handling
from tests.smtp import free_port  # noqa: E402

ORGANIZATION = "bench"
EVENT = {
    "name": "cartAbandonment",
    "label": "Cart abandonment",
    "channel": "email",
    "targeting": "event",
    "fields": [
        {"name": "firstName", "type": "text"},
        {"name": "cartAmount", "type": "text"},
        {"name": "lastProduct", "type": "text"},
        {"name": "token", "type": "text"},
    ],
    "collections": [
        {"name": "products", "fields": [{"name": "sku", "type": "text"}, {"name": "price", "type": "text"}]}
    ],
}
# One content, valid in both Jinja2 (ours) and Django templates (the peer's): the same emails.
SUBJECT = "{{ ctx.firstName }}, your cart is waiting [bench:{{ ctx.token }}]"
HTML = (
    "<html><body><p>Hello {{ ctx.firstName }},</p><p>You left <strong>{{ ctx.lastProduct }}</strong> in your "
    "cart ({{ ctx.cartAmount }}).</p><ul>{% for p in ctx.products %}<li>{{ p.sku }}: {{ p.price }}</li>"
    "{% endfor %}</ul><p>See you soon.</p></body></html>"
)
TEXT = (
    "Hello {{ ctx.firstName }}, you left {{ ctx.lastProduct }} in your cart ({{ ctx.cartAmount }}).\n"
    "{% for p in ctx.products %}- {{ p.sku }}: {{ p.price }}\n{% endfor %}See you soon."
)


def event_body(token: str) -> dict:
    return {
        "email": f"{token}@example.com",
        "ctx": {
            "firstName": "Jack",
            "cartAmount": "$125",
            "lastProduct": "Leather Bag",
            "token": token,
            "products": [{"sku": "LB-1", "price": "99.00"}, {"sku": "WL-7", "price": "26.00"}],
        },
    }


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


class Sink:
    """The SMTP server's log: token -> acceptance time."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.path = OUT / "smtp-accepted.log"
        self.path.write_text("")
        self.process = Process(
            "smtp-sink", [sys.executable, "bench/smtp_sink.py", str(self.port), str(self.path)], env, OUT
        )
        wait_until(lambda: "ready" in self.process.log_path.read_text(), timeout=15, what="the SMTP sink")

    def accepted(self, prefix: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for line in self.path.read_text().splitlines():
            token, _, at = line.partition(" ")
            if token.startswith(prefix) and at:
                found[token] = float(at)
        return found

    def wait_for(self, prefix: str, count: int, timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.accepted(prefix)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


@dataclass
class Stack:
    env: dict[str, str]
    web_port: int
    api_path: str
    floor_path: str
    headers: dict[str, str]
    web_pid: int

    def request(self, path: str) -> callable:
        headers = {**self.headers, "Content-Type": "application/json;charset=utf-8"}

        def make(token: str) -> Request:
            return Request(path, json.dumps(event_body(token)).encode(), headers)

        return make


def environment(args, smtp_port: int | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": args.database,
        "CELERY_BROKER_URL": args.redis_broker,
        "CACHE_URL": args.redis_cache,
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 50,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "ACCESS_LOG": "-",
        "VAR_DIR": str(OUT / "var"),
        "PROMETHEUS_MULTIPROC_DIR": str(OUT / "prometheus"),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "bench.settings",
    }
    if smtp_port:
        env["EMAIL_URL"] = f"smtp://127.0.0.1:{smtp_port}"
    return env


def reset_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def set_up(args) -> dict:
    """Migrate a fresh database and create the organization, its credential and the published event."""
    import django

    django.setup()
    from django.core.management import call_command

    from campaign import services as campaign_services
    from events.configuration_file import import_file

    call_command("migrate", verbosity=0)
    organization = campaign_services.create_organization(slug=ORGANIZATION, sender_address="shop@example.com")
    credential = campaign_services.create_api_credential(organization=organization, name="bench")
    token = campaign_services.issue_access_token(
        api_key=credential.credential.api_key, client_secret=credential.client_secret
    )
    [configuration] = import_file(
        {
            "organization": ORGANIZATION,
            "events": [{**EVENT, "message": {"subject": SUBJECT, "html": HTML, "text": TEXT}}],
        },
        publish=True,
    )
    return {
        "organization_id": organization.pk,
        "configuration_id": configuration.pk,
        "event_id": configuration.event_id,
        "headers": {
            "Authorization": f"Bearer {token.access_token}",
            "X-Api-Key": credential.credential.api_key,
        },
    }


def clear_events(args) -> None:
    """Empty the event tables and the broker's queue between phases."""
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE events_event CASCADE")
    redis.Redis.from_url(args.redis_broker).flushdb()


def start_web(env: dict[str, str], port: int) -> Process:
    web = Process(
        "gunicorn",
        [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "campaign.wsgi", "-b", f"127.0.0.1:{port}"],
        env,
        OUT,
    )

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return answer.status == 200

    wait_until(healthy, timeout=30, what="gunicorn")
    return web


def start_worker(env: dict[str, str], concurrency: int, *, beat: bool = False) -> Process:
    command = [
        str(BIN / "celery"), "-A", "campaign", "worker", "-l", "INFO", "-c", str(concurrency),
        "-n", f"bench-{concurrency}@%h", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    if beat:
        command += ["--beat", "-s", str(OUT / "beat-schedule")]
    worker_env = {**env, "DJANGO_SETTINGS_MODULE": "campaign.settings"}
    return Process(f"worker-{concurrency}", command, worker_env, OUT)


def run_pgbench(args, ids: dict, clients: int, duration: float) -> dict:
    script = OUT / "insert.sql"
    columns = (
        "pkey, organization_id, configuration_id, email, mobile_phone, push_platform, registration_token,"
        " application, ctx, status, attempts, next_attempt_at, enqueued_at, last_error, request_fingerprint,"
        " created_at, updated_at, sensitive_ctx"
    )
    ctx = json.dumps(event_body("pgbench")["ctx"])
    script.write_text(
        f"INSERT INTO events_event ({columns}) VALUES (md5(random()::text || clock_timestamp()::text),"
        f" {ids['organization_id']}, {ids['configuration_id']}, 'jack@example.com', '', '', '', '',"
        f" '{ctx}'::jsonb, 'pending', 0, now(), now(), '', '', now(), now(), '');\n"
    )
    pgbench = shutil.which("pgbench") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None
    )
    if pgbench is None:
        return {"tps": float("nan"), "latency_ms": float("nan")}
    database = args.database.replace("postgres://", "postgresql://", 1)
    output = subprocess.run(
        [str(pgbench), "-n", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)), "-T",
         str(int(duration)), "-f", str(script), database],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    tps = float(re.search(r"tps = ([\d.]+)", output).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", output).group(1))
    return {"tps": tps, "latency_ms": latency}


def measure_ingest(args, stack: Stack, ids: dict) -> list[dict]:
    rows = []
    ours, floor = stack.request(stack.api_path), stack.request(stack.floor_path)
    closed_loop("127.0.0.1", stack.web_port, ours, concurrency=8, duration=args.warmup)  # warm every worker
    closed_loop("127.0.0.1", stack.web_port, floor, concurrency=8, duration=args.warmup)
    database = postgres_root()
    for concurrency in args.concurrency:
        clear_events(args)
        meter = CpuMeter(web=stack.web_pid, db=database).start()
        result_ours = closed_loop(
            "127.0.0.1", stack.web_port, ours, concurrency=concurrency, duration=args.duration
        )
        cpu_ours = per_event(meter.stop(), len(result_ours.latencies))
        clear_events(args)
        meter = CpuMeter(web=stack.web_pid, db=database).start()
        result_floor = closed_loop(
            "127.0.0.1", stack.web_port, floor, concurrency=concurrency, duration=args.duration
        )
        cpu_floor = per_event(meter.stop(), len(result_floor.latencies))
        clear_events(args)
        pgbench = run_pgbench(args, ids, concurrency, args.duration)
        row = {
            "concurrency": concurrency,
            "ours": {**summary(result_ours), "cpu_ms": cpu_ours},
            "django_floor": {**summary(result_floor), "cpu_ms": cpu_floor},
        }
        row["pgbench"] = pgbench
        rows.append(row)
        print_progress(
            f"ingest c={concurrency}: ours {row['ours']['rate']:.0f}/s, Django floor "
            f"{row['django_floor']['rate']:.0f}/s, pgbench {pgbench['tps']:.0f} tps"
        )
    clear_events(args)
    return rows


def per_event(used: dict[str, float], count: int) -> dict[str, float]:
    """CPU milliseconds per event of each process tree measured."""
    return {name: seconds * 1000 / count if count else float("nan") for name, seconds in used.items()}


def drain(sink: Sink, prefix: str, count: int, timeout: float, **roots: int | None) -> tuple[dict, dict]:
    """Wait until `count` emails of `prefix` reach the SMTP server; the CPU the process trees used
    between the first acceptance and the last, per email (the boot before the first is left out,
    as the rate leaves it out)."""
    deadline = time.monotonic() + timeout
    while not sink.accepted(prefix) and time.monotonic() < deadline:
        time.sleep(0.05)
    meter = CpuMeter(**roots).start()
    before = len(sink.accepted(prefix))
    accepted = sink.wait_for(prefix, count, timeout=max(1.0, deadline - time.monotonic()))
    return accepted, per_event(meter.stop(), len(accepted) - before)


def summary(result: LoadResult) -> dict:
    return {
        "rate": result.rate,
        "count": len(result.latencies),
        "errors": result.errors,
        "p50": percentile(result.latencies, 0.50),
        "p95": percentile(result.latencies, 0.95),
        "p99": percentile(result.latencies, 0.99),
    }


def measure_end_to_end(args, stack: Stack, sink: Sink) -> list[dict]:
    rows = []
    worker = start_worker(stack.env, os.cpu_count() or 2, beat=True)
    try:
        # The worker's boot, its processes' first connections and template compilation: events
        # sent before it is warm would only measure that. Warm it with a few events, delivered.
        warm = open_loop(
            "127.0.0.1", stack.web_port, stack.request(stack.api_path), rate=20, duration=2,
            token_prefix="e2ewarm",
        )  # fmt: skip
        sink.wait_for("e2ewarm-", len(warm.sent_at), timeout=60)
        for rate in args.rates:
            prefix = f"e2e{rate}"
            result = open_loop(
                "127.0.0.1", stack.web_port, stack.request(stack.api_path), rate=rate,
                duration=args.e2e_duration, token_prefix=prefix,
            )  # fmt: skip
            accepted = sink.wait_for(prefix + "-", len(result.sent_at), timeout=60)
            latencies = [
                accepted[token] - sent for token, sent in result.sent_at.items() if token in accepted
            ]
            row = {
                "rate": rate,
                "sent": len(result.sent_at),
                "accepted_by_api": len(result.latencies),
                "not_accepted": result.error_kinds,
                "delivered": len(latencies),
                "post_p99": percentile(result.latencies, 0.99),
                "p50": percentile(latencies, 0.50),
                "p95": percentile(latencies, 0.95),
                "p99": percentile(latencies, 0.99),
                "max": max(latencies, default=float("nan")),
            }
            rows.append(row)
            print_progress(f"end to end {rate}/s: p50 {ms(row['p50'])} ms, p99 {ms(row['p99'])} ms")
    finally:
        worker.stop()
    clear_events(args)
    return rows


def delivery_rate(times: list[float]) -> float:
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def measure_workers(args, stack: Stack, sink: Sink, ids: dict) -> list[dict]:
    """N events stored and queued while no worker runs; then a worker with P processes drains them."""
    from events.models import EventConfiguration
    from events.services import ingest

    rows = []
    configuration = EventConfiguration.objects.get(pk=ids["configuration_id"])
    for processes in args.processes:
        clear_events(args)
        prefix = f"ours{processes}"
        store_events(configuration, ingest, prefix, args.events)
        worker = start_worker(stack.env, processes)
        try:
            accepted, cpu_ours = drain(
                sink, prefix + "-", args.events, 600, worker=worker.popen.pid, db=postgres_root()
            )
        finally:
            worker.stop()
        ours = delivery_rate(list(accepted.values()))
        peer, cpu_peer = measure_post_office(args, stack, sink, processes)
        rows.append(
            {
                "processes": processes,
                "ours": ours,
                "ours_delivered": len(accepted),
                "post_office": peer,
                "cpu_ms": cpu_ours,
                "post_office_cpu_ms": cpu_peer,
            }
        )
        print_progress(
            f"workers x{processes}: ours {ours:.0f}/s ({cpu_ours.get('worker', 0):.2f} CPU ms/email), "
            f"django-post-office {peer:.0f}/s ({cpu_peer.get('worker', 0):.2f} CPU ms/email)"
        )
    clear_events(args)
    return rows


def store_events(configuration, ingest, prefix: str, count: int) -> None:
    from events.schema import validate_event

    for number in range(count):
        body = event_body(f"{prefix}-{number}")  # validated as the API does
        ingest(configuration=configuration, validated=validate_event(configuration.published_schema, body))


def measure_post_office(args, stack: Stack, sink: Sink, processes: int) -> tuple[float, dict]:
    from django.db import connection
    from post_office import mail
    from post_office.models import Email, EmailTemplate

    Email.objects.all().delete()
    template, _ = EmailTemplate.objects.update_or_create(
        name="cart", defaults={"subject": SUBJECT, "html_content": HTML, "content": TEXT}
    )
    prefix = f"peer{processes}"
    for number in range(args.events):
        body = event_body(f"{prefix}-{number}")
        mail.send(
            body["email"], "Bench <shop@example.com>", template=template, context={"ctx": body["ctx"]},
            render_on_delivery=True,
        )  # fmt: skip
    connection.close()
    sender = Process(
        f"post-office-{processes}",
        [sys.executable, "manage.py", "send_queued_mail", "--processes", str(processes)],
        stack.env,
        OUT,
    )
    accepted, cpu = drain(sink, prefix + "-", args.events, 600, worker=sender.popen.pid, db=postgres_root())
    sender.popen.wait(600)
    sender.stop()
    if len(accepted) < args.events:
        print_progress(
            f"django-post-office delivered {len(accepted)} of {args.events}; see {sender.log_path}"
        )
    return delivery_rate(list(accepted.values())), cpu


def print_progress(line: str) -> None:
    print(f"  .. {line}", file=sys.stderr, flush=True)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.0%}" if b else "n/a"


def cpu(cells: dict, name: str) -> str:
    value = cells.get("cpu_ms", {}).get(name)
    return f"{value:.2f}" if value is not None else "n/a"


def render(results: dict) -> str:
    lines = []
    machine = results["machine"]
    lines.append(
        f"Machine: {machine['cores']} cores, {machine['python']}, PostgreSQL {machine['postgresql']}, "
        f"gunicorn {machine['gunicorn']}"
    )
    lines.append("")
    lines.append(f"Ingest: POST one event, closed loop, {results['duration']:.0f} s per cell")
    lines.append(
        "| clients | ours ev/s | p50 ms | p95 ms | p99 ms | errors | bare Django ev/s | p99 ms "
        "| pgbench tps | ours / Django | ours / pgbench "
        "| CPU ms/ev web: ours / Django | CPU ms/ev PostgreSQL: ours / Django |"
    )
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results["ingest"]:
        o, f, p = row["ours"], row["django_floor"], row["pgbench"]
        lines.append(
            f"| {row['concurrency']} | {o['rate']:.0f} | {ms(o['p50'])} | {ms(o['p95'])} | {ms(o['p99'])} "
            f"| {o['errors']} | {f['rate']:.0f} | {ms(f['p99'])} | {p['tps']:.0f} "
            f"| {ratio(o['rate'], f['rate'])} | {ratio(o['rate'], p['tps'])} "
            f"| {cpu(o, 'web')} / {cpu(f, 'web')} | {cpu(o, 'db')} / {cpu(f, 'db')} |"
        )
    if results.get("end_to_end"):
        lines.append("")
        lines.append(
            f"End to end: POST to SMTP acceptance, open loop, {results['e2e_duration']:.0f} s per rate, "
            f"one worker with {machine['cores']} processes"
        )
        lines.append(
            "| events/s | sent | accepted (201) | delivered "
            "| p50 ms | p95 ms | p99 ms | max ms | POST p99 ms | not accepted: why |"
        )
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for row in results["end_to_end"]:
            lines.append(
                f"| {row['rate']} | {row['sent']} | {row['accepted_by_api']} | {row['delivered']} "
                f"| {ms(row['p50'])} | {ms(row['p95'])} "
                f"| {ms(row['p99'])} | {ms(row['max'])} | {ms(row['post_p99'])} "
                f"| {', '.join(f'{kind} x{n}' for kind, n in row.get('not_accepted', {}).items()) or '-'} |"
            )
    if results.get("workers"):
        lines.append("")
        lines.append(f"Worker throughput: {results['events']} queued emails drained to the SMTP server")
        lines.append(
            "| processes | ours emails/s | per process | per core "
            "| django-post-office emails/s | ours / peer "
            "| CPU ms/email worker: ours / peer | CPU ms/email PostgreSQL: ours / peer |"
        )
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        cores = machine["cores"]
        for row in results["workers"]:
            per_core = row["ours"] / min(row["processes"], cores)
            peer_cpu = {"cpu_ms": row.get("post_office_cpu_ms", {})}
            lines.append(
                f"| {row['processes']} | {row['ours']:.0f} | {row['ours'] / row['processes']:.0f} "
                f"| {per_core:.0f} | {row['post_office']:.0f} | {ratio(row['ours'], row['post_office'])} "
                f"| {cpu(row, 'worker')} / {cpu(peer_cpu, 'worker')} "
                f"| {cpu(row, 'db')} / {cpu(peer_cpu, 'db')} |"
            )
    goals = goal_lines(results)
    if goals:
        lines.append("")
        lines.append("Goals (issue 14)")
        lines.append("| goal | target | measured | met |")
        lines.append("|---|---:|---:|:---:|")
        lines.extend(goals)
    return "\n".join(lines)


E2E_P99_GOALS_MS = {50: 100, 100: 250, 200: 500}


def goal_lines(results: dict) -> list[str]:
    """Each goal of the throughput issue beside what this run measured."""
    lines = []

    def goal(name: str, target: str, measured: str, met: bool) -> None:
        lines.append(f"| {name} | {target} | {measured} | {'yes' if met else 'NO'} |")

    for row in results.get("ingest", []):
        if row["concurrency"] < 8:
            continue
        o, f = row["ours"], row["django_floor"]
        share = o["rate"] / f["rate"] if f["rate"] else 0.0
        name = f"ingest, {row['concurrency']} clients, ours / bare Django"
        goal(name, ">= 0.80", f"{share:.2f}", share >= 0.8)
        if row["concurrency"] == 32:
            limit = f["p99"] * 1.5
            goal("ingest p99 at 32 clients", f"<= {ms(limit)} ms", f"{ms(o['p99'])} ms", o["p99"] <= limit)
    for row in results.get("end_to_end", []):
        target = E2E_P99_GOALS_MS.get(row["rate"])
        if target is not None:
            goal(f"end to end p99 at {row['rate']}/s", f"< {target} ms", f"{ms(row['p99'])} ms",
                 row["p99"] * 1000 < target)  # fmt: skip
        goal(f"every POST accepted at {row['rate']}/s", f"{row['sent']}", f"{row['accepted_by_api']}",
             row["accepted_by_api"] == row["sent"] and row["delivered"] == row["sent"])  # fmt: skip
    for row in results.get("workers", []):
        share = row["ours"] / row["post_office"] if row["post_office"] else 0.0
        goal(f"worker, {row['processes']} process(es), ours / django-post-office", ">= 1.00", f"{share:.2f}",
             share >= 1.0)  # fmt: skip
    return lines


def machine_facts(args) -> dict:
    import gunicorn
    import psycopg

    with psycopg.connect(args.database.replace("postgres://", "postgresql://", 1)) as connection:
        version = connection.execute("SHOW server_version").fetchone()[0]
    return {
        "cores": os.cpu_count(),
        "python": f"Python {platform.python_version()}",
        "postgresql": version.split()[0],
        "gunicorn": gunicorn.__version__,
    }


def parse_arguments() -> argparse.Namespace:
    numbers = lambda text: [int(part) for part in text.split(",") if part]  # noqa: E731
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/campaign_bench",
                        help="a PostgreSQL database that the bench drops and re-creates")  # fmt: skip
    parser.add_argument("--redis-broker", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--redis-cache", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--concurrency", type=numbers, default=[1, 8, 32], help="ingest clients, e.g. 1,8,32")
    parser.add_argument("--duration", type=float, default=10, help="seconds per ingest cell")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--rates", type=numbers, default=[50, 100, 200], help="end-to-end events/s")
    parser.add_argument("--e2e-duration", type=float, default=20)
    parser.add_argument("--events", type=int, default=3000, help="emails per worker-throughput run")
    parser.add_argument("--processes", type=numbers, default=[1, 2], help="worker processes to try")
    parser.add_argument("--only", choices=["ingest", "e2e", "workers"], action="append")
    parser.add_argument("--quick", action="store_true", help="short cells: a smoke run, not a measurement")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.e2e_duration, args.events = 3, 1, 5, 300
    return args


def main() -> None:
    args = parse_arguments()
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "prometheus").mkdir(parents=True)
    (OUT / "var").mkdir()
    only = set(args.only or ["ingest", "e2e", "workers"])
    reset_database(args.database)
    base_env = environment(args)
    os.environ.update({k: v for k, v in base_env.items() if k != "PYTHONUNBUFFERED"})
    sink = Sink(base_env)
    env = environment(args, smtp_port=sink.port)
    os.environ["EMAIL_URL"] = env["EMAIL_URL"]
    ids = set_up(args)
    web_port = free_port()
    web = start_web(env, web_port)
    stack = Stack(
        env=env,
        web_port=web_port,
        api_path=f"/{ORGANIZATION}/campaign/mc{ORGANIZATION}/{ids['event_id']}",
        floor_path=f"/bench/floor/{ids['organization_id']}/{ids['configuration_id']}",
        headers=ids["headers"],
        web_pid=web.popen.pid,
    )
    results: dict = {
        "machine": machine_facts(args),
        "duration": args.duration,
        "e2e_duration": args.e2e_duration,
        "events": args.events,
    }
    try:
        if "ingest" in only:
            results["ingest"] = measure_ingest(args, stack, ids)
        if "e2e" in only:
            results["end_to_end"] = measure_end_to_end(args, stack, sink)
        if "workers" in only:
            results["workers"] = measure_workers(args, stack, sink, ids)
    finally:
        web.stop()
        sink.process.stop()
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print(render({"ingest": [], **results}))


if __name__ == "__main__":
    main()
