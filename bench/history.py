#!/usr/bin/env python
"""`python bench/history.py [--events N]`: what a long history costs, or rather that it costs nothing.

Measures the hot paths with a small history (50,000 events), then loads N events (generated in SQL, spread over
60 days, most of them final, one event type in ten being the one measured), and measures them
again in the same run: ingest (POST), GET by PKey, the list endpoint (first page, a status filter,
a page further on), the sweep, and a 30-day report (from the hourly rollups, which are written for
the loaded history in one GROUP BY, as the beat's job would). Prints one table, small vs N.
"""

# ruff: noqa: E501 - the SQL that loads the history reads best on long lines
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import Request, closed_loop  # noqa: E402
from bench.run import (  # noqa: E402
    EVENT,
    HTML,
    ORGANIZATION,
    OUT,
    SUBJECT,
    TEXT,
    environment,
    event_body,
    percentile,
    reset_database,
    start_web,
)
from tests.smtp import free_port  # noqa: E402

# One event type in ten is the measured one: its list is a small part of a big table, as in life.
OTHER_TYPES = 9
# The baseline's history: small, yet enough for the measured type to have events in nearly every
# hour of 30 days, so that both columns' reports read as many rollup rows (one per hour).
SMALL = 50_000
STATUSES = ["processed"] * 90 + ["deliveryFailed"] * 4 + ["ignored"] * 3 + ["tooOld"] * 2 + ["routingFailed"]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/campaign_history",
                        help="a PostgreSQL database that the bench drops and re-creates")  # fmt: skip
    parser.add_argument("--redis-broker", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--redis-cache", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--events", type=int, default=1_000_000, help="events loaded into the history")
    parser.add_argument("--duration", type=float, default=8, help="seconds per HTTP measure")
    parser.add_argument("--clients", type=int, default=8)
    return parser.parse_args()


def set_up() -> dict:
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
    message = {"subject": SUBJECT, "html": HTML, "text": TEXT}
    events = [{**EVENT, "message": message}] + [
        {**EVENT, "name": f"other{number}", "message": message} for number in range(OTHER_TYPES)
    ]
    configurations = import_file({"organization": ORGANIZATION, "events": events}, publish=True)
    return {
        "organization_id": organization.pk,
        "configurations": [c.pk for c in configurations],
        "event_id": configurations[0].event_id,
        "headers": {
            "Authorization": f"Bearer {token.access_token}",
            "X-Api-Key": credential.credential.api_key,
        },
    }


def load_history(ids: dict, count: int, *, first: int = 1) -> float:
    """N final events in one INSERT ... SELECT over generate_series; returns the seconds it took."""
    from django.db import connection

    configurations = ids["configurations"]
    statuses = "ARRAY[" + ",".join(f"'{s}'" for s in STATUSES) + "]"
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO events_event (
                pkey, organization_id, configuration_id, email, mobile_phone, push_platform,
                registration_token, application, ctx, status, attempts, next_attempt_at, last_error,
                request_fingerprint, created_at, updated_at, processed_at)
            SELECT 'H' || lpad(to_hex(g), 15, '0'), %s,
                   (%s::bigint[])[1 + g %% {len(configurations)}],
                   'customer' || g || '@example.com', '', '', '', '',
                   jsonb_build_object('firstName', 'Jane', 'cartAmount', '$' || (g %% 500),
                                      'lastProduct', 'Product ' || (g %% 97), 'token', g::text,
                                      'products', jsonb_build_array(jsonb_build_object('sku', 'SKU' || (g %% 1000), 'price', '9.90'))),
                   ({statuses})[1 + g %% {len(STATUSES)}], 1, at, '', '', at, at, at
            FROM generate_series(%s, %s) AS g,
                 -- spread over the 60 days whatever N (a multiplicative hash of g, in seconds)
                 LATERAL (SELECT now() - interval '1 second' * ((g * 2654435761) %% (60 * 86400)) - interval '1 hour') AS t(at)
            """,
            [ids["organization_id"], configurations, first, first + count - 1],
        )
    # As a production table is: vacuumed and analysed (else autovacuum works through the new rows
    # while the second column is measured).
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE events_event")
    return time.monotonic() - started


def load_rollups() -> float:
    """The history's hourly rollups, in one GROUP BY (the counts the beat's job would write for its
    events; what a report reads). Returns the seconds it took."""
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM events_hourlyrollup")
        cursor.execute(
            """
            INSERT INTO events_hourlyrollup (
                organization_id, configuration_id, version_id, hour, channel, computed_at,
                received, processed, ignored, delivery_failed, routing_failed, too_old, targeting_failed,
                sent, delivered, bounced_hard, bounced_soft, opened, opened_unique, clicked, clicked_unique,
                unsubscribed, latency_buckets, failure_reasons)
            SELECT organization_id, configuration_id, NULL, date_trunc('hour', created_at), 'email', now(),
                   count(*), count(*) FILTER (WHERE status = 'processed'), count(*) FILTER (WHERE status = 'ignored'),
                   count(*) FILTER (WHERE status = 'deliveryFailed'), count(*) FILTER (WHERE status = 'routingFailed'),
                   count(*) FILTER (WHERE status = 'tooOld'), 0,
                   count(*) FILTER (WHERE status = 'processed'), count(*) FILTER (WHERE status = 'processed'),
                   0, 0, 0, 0, 0, 0, 0, '[]'::jsonb, '{}'::jsonb
            FROM events_event GROUP BY organization_id, configuration_id, date_trunc('hour', created_at)
            """
        )
        cursor.execute("ANALYZE events_hourlyrollup")
    return time.monotonic() - started


def report_ms(configuration_id: int, runs: int = 20) -> tuple[float, int]:
    """A 30-day report of one event type, as the admin builds it (events.reports), from rollups."""
    from events import reports
    from events.models import HourlyRollup

    form = reports.PeriodForm(data={"period": "30d"})
    assert form.is_valid()
    period = form.period_in(reports.time_zone_of(None))
    timings, rows = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = reports.build(HourlyRollup.objects.filter(configuration_id=configuration_id), period).rows_read
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), rows


def sample_pkeys(configuration_id: int, size: int) -> list[str]:
    from events.models import Event

    pkeys = list(
        Event.objects.filter(configuration_id=configuration_id)
        .order_by("-id")
        .values_list("pkey", flat=True)[:20000]
    )
    return random.sample(pkeys, min(size, len(pkeys)))


def http_measures(args, port: int, api_path: str, headers: dict, pkeys: list[str]) -> dict:
    def measure(make, expect: int) -> dict:
        result = closed_loop(
            "127.0.0.1", port, make, concurrency=args.clients, duration=args.duration, expect=expect
        )
        latencies = sorted(result.latencies)
        return {"rate": result.rate, "p99_ms": percentile(latencies, 0.99) * 1000, "errors": result.errors}

    json_headers = {**headers, "Content-Type": "application/json;charset=utf-8"}
    post = lambda token: Request(api_path, json.dumps(event_body(token)).encode(), json_headers)  # noqa: E731
    get_one = lambda token: Request(f"{api_path}/{random.choice(pkeys)}", b"", headers, "GET")  # noqa: E731
    first_page = lambda token: Request(f"{api_path}?_lineCount=25", b"", headers, "GET")  # noqa: E731
    by_status = lambda token: Request(f"{api_path}?status=deliveryFailed&_lineCount=25", b"", headers, "GET")  # noqa: E731
    further = lambda token: Request(  # noqa: E731
        f"{api_path}?_lineCount=25&_lineStart={random.choice(pkeys)}", b"", headers, "GET"
    )
    closed_loop("127.0.0.1", port, first_page, concurrency=args.clients, duration=1, expect=200)  # warm up
    return {
        "ingest (POST)": measure(post, 201),
        "GET by PKey": measure(get_one, 200),
        "list, first page": measure(first_page, 200),
        "list, status filter": measure(by_status, 200),
        "list, a page further on": measure(further, 200),
    }


def sweep_ms(runs: int = 20) -> float:
    """The sweep over the history alone: the events the ingest cell POSTed (no worker runs here) are
    settled first, so that both columns measure finding nothing due among N final events."""
    from django.db import connection

    from events.sweep import recover

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE events_event SET status = 'processed', processed_at = now() WHERE status = 'pending'"
        )

    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        recover()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def table_size() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('events_event'))")
        return cursor.fetchone()[0]


def main() -> None:
    args = parse_arguments()
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "prometheus").mkdir(parents=True)
    (OUT / "var").mkdir()
    args.database_url = args.database
    run_args = argparse.Namespace(
        database=args.database, redis_broker=args.redis_broker, redis_cache=args.redis_cache
    )
    reset_database(args.database)
    env = environment(run_args)
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"})
    ids = set_up()
    port = free_port()
    web = start_web(env, port)
    api_path = f"/{ORGANIZATION}/campaign/mc{ORGANIZATION}/{ids['event_id']}"
    measured = ids["configurations"][0]
    try:
        # The baseline: a small history (SMALL events over the same 60 days), then N more.
        load_history(ids, SMALL)
        print(f"  .. a history of {SMALL:,} events", flush=True)
        empty = http_measures(args, port, api_path, ids["headers"], sample_pkeys(measured, 200))
        empty["sweep (ms per run)"] = sweep_ms()
        load_rollups()
        empty["30-day report of one event type (ms)"], empty_rows = report_ms(measured)
        empty_size = table_size()
        print(f"  .. loading {args.events:,} events", flush=True)
        load_seconds = load_history(ids, args.events, first=SMALL + 1)
        print(f"  .. loaded in {load_seconds:.0f} s; events table {table_size()}", flush=True)
        loaded = http_measures(args, port, api_path, ids["headers"], sample_pkeys(measured, 2000))
        loaded["sweep (ms per run)"] = sweep_ms()
        rollup_seconds = load_rollups()
        print(f"  .. rollups of the history in {rollup_seconds:.0f} s", flush=True)
        loaded["30-day report of one event type (ms)"], loaded_rows = report_ms(measured)
        loaded_size = table_size()
    finally:
        web.stop()
    print()
    print(f"History: {args.events:,} events loaded in {load_seconds:.0f} s (events table {empty_size} -> "
          f"{loaded_size}); {args.clients} clients, {args.duration:g} s per HTTP cell")  # fmt: skip
    print(
        f"| measure | {SMALL:,} events: per s | p99 ms | {args.events + SMALL:,} events: per s | p99 ms | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in empty:
        before, after = empty[name], loaded[name]
        if isinstance(before, float):
            note = f" ({empty_rows} rollup rows)" if "report" in name else ""
            after_note = f" ({loaded_rows} rollup rows)" if "report" in name else ""
            print(
                f"| {name} | {before:.2f} ms{note} | | {after:.2f} ms{after_note} | | {after / before:.2f} x time |"
            )
        else:
            ratio = after["rate"] / before["rate"] if before["rate"] else 0
            print(
                f"| {name} | {before['rate']:.0f} | {before['p99_ms']:.1f} | {after['rate']:.0f} | "
                f"{after['p99_ms']:.1f} | {ratio:.2f} x rate |"
            )


if __name__ == "__main__":
    main()
