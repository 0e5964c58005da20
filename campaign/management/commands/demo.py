"""`manage.py demo`: the whole product on one machine with nothing but Python.

Migrates, seeds a demo organization (an administrator and a marketer, an API credential, the
seed's cartAbandonment event and message published, a few profiles), then runs the web server and
a Celery worker with its sweep on the embedded broker, and prints what to open and what to paste.
Running it again reuses what exists (the passwords and the secret are kept in var/demo.json).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.http.request import validate_host

from campaign import services
from campaign.cli import CampaignCommand
from campaign.models import ApiCredential, Membership, Organization, Profile, SenderDomain, hash_secret
from campaign.roles import ADMINISTRATORS, MARKETERS
from events.configuration_file import import_file
from events.models import EventConfiguration

EXAMPLES = Path(settings.BASE_DIR) / "examples" / "events.json"
DEMO_SENDER = "shop@geometrixx.example"  # its domain is the sender domain of examples/events.json
DEMO_PROFILES = [  # email, first name, last name, language, test profile (proofs may go to it)
    ("jane.doe@example.com", "Jane", "Doe", "en", True),
    ("jean.dupont@example.com", "Jean", "Dupont", "fr", False),
    ("ada.lovelace@example.com", "Ada", "Lovelace", "en", False),
]


class Command(CampaignCommand):
    help = "Set up the demo organization and run web server, worker and sweep together (Ctrl-C stops)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-serve", action="store_true", help="set up and print, but start nothing")

    def handle(self, *args, host: str, port: int, no_serve: bool, **options):
        if not no_serve:
            # Before anything is written or printed: a server already on the port would answer our
            # readiness check and the banner would point at it.
            self._check_address(host, port)
        call_command("migrate", verbosity=0)
        state_file = Path(settings.VAR_DIR) / "demo.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        organization = self._organization()
        state["users"] = {
            username: self._user(username, role, organization, state.get("users", {}).get(username))
            for username, role in (("admin", ADMINISTRATORS), ("marketer", MARKETERS))
        }
        state["credential"] = self._credential(organization, state.get("credential"))
        self._events(organization)
        self._profiles(organization)
        state_file.write_text(json.dumps(state, indent=2))
        state_file.chmod(0o600)
        base = f"http://{self._url_host(host)}:{port}"
        token = services.issue_access_token(
            api_key=state["credential"]["api_key"], client_secret=state["credential"]["client_secret"]
        )
        self._print_welcome(base, state, token.access_token)
        if not no_serve:
            self._serve(host, port, base)

    @staticmethod
    def _url_host(host: str) -> str:
        return f"[{host}]" if ":" in host else host

    def _check_address(self, host: str, port: int) -> None:
        """The web server can listen on host:port, and Django will answer requests for that host."""
        if not 1 <= port <= 65535:
            raise CommandError(f"--port {port}: a port is a number from 1 to 65535")
        if not validate_host(self._url_host(host).lower(), settings.ALLOWED_HOSTS):
            raise CommandError(
                f"--host {host}: not in ALLOWED_HOSTS ({', '.join(settings.ALLOWED_HOSTS)}); "
                "add it there, or use 127.0.0.1"
            )
        try:
            family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        except socket.gaierror as error:
            raise CommandError(f"--host {host}: not an address of this machine ({error.strerror})") from None
        with socket.socket(family, kind, protocol) as probe:
            # As the web server binds: a port in TIME_WAIT is free, one with a listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise CommandError(
                        f"port {port} on {host} is in use by another program: "
                        f"run the demo on another one, e.g. --port {port + 1 if port < 65535 else 8001}"
                    ) from None
                raise CommandError(f"--host {host}: cannot listen there ({error.strerror})") from None

    def _organization(self) -> Organization:
        organization = Organization.objects.filter(slug="geometrixx").first()
        if organization is None:
            organization = services.create_organization(
                slug="geometrixx", name="Geometrixx", sender_address=DEMO_SENDER
            )
        # Also on a demo set up before sender domains existed: the examples send from this domain.
        SenderDomain.objects.get_or_create(organization=organization, domain=DEMO_SENDER.rpartition("@")[2])
        return organization

    def _user(self, username: str, role: str, organization: Organization, known: dict | None) -> dict:
        user = User.objects.filter(username=username).first()
        password = (known or {}).get("password")
        if user is None or not password or not user.check_password(password):
            password = secrets.token_urlsafe(10)
            user = user or User(username=username)
            user.is_staff, user.is_active = True, True
            user.set_password(password)
            user.save()
        Membership.objects.get_or_create(user=user, defaults={"organization": organization})
        user.groups.set([Group.objects.get(name=role)])
        return {"password": password, "role": role}

    def _credential(self, organization: Organization, known: dict | None) -> dict:
        if known:
            credential = ApiCredential.objects.filter(api_key=known.get("api_key"), is_active=True).first()
            if credential and credential.secret_hash == hash_secret(known.get("client_secret", "")):
                return known
        issued = services.create_api_credential(organization=organization, name="demo")
        return {"api_key": issued.credential.api_key, "client_secret": issued.client_secret}

    def _events(self, organization: Organization) -> None:
        if not EventConfiguration.objects.filter(organization=organization, name="cartAbandonment").exists():
            import_file(json.loads(EXAMPLES.read_text()), publish=True)

    def _profiles(self, organization: Organization) -> None:
        for email, first, last, language, is_test in DEMO_PROFILES:
            Profile.objects.get_or_create(
                organization=organization,
                email=email,
                defaults={"first_name": first, "last_name": last, "language": language, "is_test": is_test},
            )

    def _print_welcome(self, base: str, state: dict, token: str) -> None:
        users = state["users"]
        future = time.strftime("%Y-%m-%d %H:%M:%S.000Z", time.gmtime(time.time() + 30 * 86400))
        body = json.dumps(
            {
                "email": "test@example.com",
                "scheduled": None,
                "expiration": future,
                "ctx": {
                    "cartAmount": "$ 125",
                    "lastProduct": "Leather motorbike jacket",
                    "firstName": "Jack",
                },
            },
            indent=2,
        ).replace('"scheduled": null,\n  ', "")
        key = state["credential"]["api_key"]
        self.stdout.write(
            f"""
Transactional messaging demo
============================
Admin:        {base}/admin/
  administrator  admin / {users["admin"]["password"]}
  marketer       marketer / {users["marketer"]["password"]}
API key:      {key}
Secret:       {state["credential"]["client_secret"]}
Emails:       one .eml file each under {settings.EMAIL_FILE_PATH} (and listed in the admin under Deliveries)

Send the seed's event (a token valid 24 h is filled in; "AC_language": "fr" in ctx sends it in French):

curl -X POST '{base}/geometrixx/campaign/mcgeometrixx/EVTcartAbandonment' \\
  -H 'Authorization: Bearer {token}' \\
  -H 'Cache-Control: no-cache' \\
  -H 'X-Api-Key: {key}' \\
  -H 'Content-Type: application/json;charset=utf-8' \\
  -d '{body}'

Then GET its status: curl '{base}/geometrixx/campaign/mcgeometrixx/EVTcartAbandonment/<PKey>' \\
  -H 'Authorization: Bearer {token}' -H 'X-Api-Key: {key}'
"""
        )

    def _serve(self, host: str, port: int, base: str) -> None:
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        celery = str(Path(sys.executable).parent / "celery")
        env = {**os.environ, "PUBLIC_URL": os.environ.get("PUBLIC_URL", base)}
        beat_schedule = str(Path(settings.VAR_DIR) / "celerybeat-schedule")
        processes = [
            subprocess.Popen([*manage, "runserver", f"{self._url_host(host)}:{port}", "--noreload"], env=env),
            subprocess.Popen(
                [
                    celery,
                    "-A",
                    "campaign",
                    "worker",
                    "--beat",
                    "-l",
                    "WARNING",
                    "-c",
                    "2",
                    "-s",
                    beat_schedule,
                ],
                env=env,
                cwd=settings.BASE_DIR,
            ),
        ]
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        ready = False
        exited = None
        try:
            while not stopping:
                exited = next((p for p in processes if p.poll() is not None), None)
                if exited is not None:
                    break
                if not ready:
                    try:
                        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:
                            ready = answer.status == 200
                    except OSError:
                        pass
                    if ready:
                        self.stdout.write(f"Ready: {base}/admin/  (Ctrl-C stops everything)")
                        self.stdout.flush()
                time.sleep(0.5)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
            self.stdout.write("Demo stopped.")
        if exited is not None:
            name = "the web server" if exited is processes[0] else "the worker"
            raise CommandError(f"{name} exited with code {exited.returncode} (see above); the demo stopped")
