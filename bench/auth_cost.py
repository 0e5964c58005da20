"""What immediate revocation costs an authenticated request: the cached-token path of
campaign.auth.caller_for_token with its generation check, beside a bare read of the same entry from
the process's cache.

    .venv/bin/python bench/auth_cost.py [--seconds 3]

Runs on a throwaway SQLite database (or DATABASE_URL) and prints microseconds per call and the
generation queries it made. Never part of the tests: it only prints figures."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="auth-cost-")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch}/auth.sqlite3")
    os.environ.setdefault("VAR_DIR", scratch)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaign.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from campaign import auth, services

    call_command("migrate", verbosity=0)
    organization = services.create_organization(slug=f"bench{int(time.time())}")
    issued = services.create_api_credential(organization=organization)
    token = services.issue_access_token(
        api_key=issued.credential.api_key, client_secret=issued.client_secret
    ).access_token
    assert auth.caller_for_token(token) is not None  # cached from here on
    key, generation = auth.hash_secret(token), auth._callers.generation()

    def rate(call) -> tuple[float, int]:
        with CaptureQueriesContext(connection) as queries:
            calls, started = 0, time.perf_counter()
            while time.perf_counter() - started < args.seconds:
                call()
                calls += 1
            elapsed = time.perf_counter() - started
        return elapsed / calls * 1e6, len(queries)

    bare, _ = rate(lambda: auth._callers.get(key, generation))
    checked, queries = rate(lambda: auth.caller_for_token(token))
    print(f"cached token, bare cache read:            {bare:7.1f} µs/call")
    print(
        f"cached token, with the revocation check:  {checked:7.1f} µs/call "
        f"(hash + generation; {queries} generation queries in {args.seconds:.0f} s)"
    )


if __name__ == "__main__":
    main()
