"""Running `manage.py` as an operator does: a subprocess with its own SQLite file and var/ directory.

The subprocess never shares the test database (pytest-django's SQLite test database is not the
file a child process would open, and on PostgreSQL it lives in a transaction). A session fixture
migrates and seeds one template file; each test gets its own copy. The commands are tested for
what a script sees: exit code, stdout, stderr.

Seeded as the README sets up: organization `geometrixx` with its sender `shop@geometrixx.example`
(so its sender domain is declared; its cartAbandonment event published with its message, its
welcome event saved as a draft), organization `acme` with no event and no sender domain.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_FILE = ROOT / "examples" / "events.json"

SEED = """
import json
from django.core.management import call_command
sender = ["--sender", "shop@geometrixx.example"]
call_command("create_organization", "geometrixx", "--name", "Geometrixx", *sender)
call_command("create_organization", "acme")
data = json.load(open({example!r}))
cart = {{**data, "events": [e for e in data["events"] if e["name"] == "cartAbandonment"]}}
welcome = {{**data, "events": [e for e in data["events"] if e["name"] == "welcome"]}}
json.dump(cart, open({directory!r} + "/cart.json", "w"))
json.dump(welcome, open({directory!r} + "/welcome.json", "w"))
call_command("import_events", {directory!r} + "/cart.json", "--publish")
call_command("import_events", {directory!r} + "/welcome.json")
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()


@dataclass
class Cli:
    database: Path
    var_dir: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_"))}
        env.update(DATABASE_URL=f"sqlite:///{self.database}", VAR_DIR=str(self.var_dir), PYTHONUNBUFFERED="1")
        return env

    def run(self, *args: str, timeout: float = 60) -> Result:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def run_all(self, commands: list[list[str]], timeout: float = 60) -> list[Result]:
        """Several read-mostly commands at once (each on the same database file), in order."""
        started = [
            subprocess.Popen(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=self.env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for args in commands
        ]
        results = []
        for process in started:
            stdout, stderr = process.communicate(timeout=timeout)
            results.append(Result(process.returncode, stdout, stderr))
        return results

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with sqlite3.connect(self.database) as connection:
            return connection.execute(sql, params).fetchall()

    def count(self, table: str) -> int:
        return self.rows(f"SELECT COUNT(*) FROM {table}")[0][0]

    def counts(self) -> dict[str, int]:
        """Rows of every table a command may write, to prove that a refused command wrote nothing."""
        return {
            table: self.count(table)
            for table in (
                "campaign_organization",
                "campaign_apicredential",
                "campaign_profile",
                "events_eventconfiguration",
                "events_eventfield",
                "transactional_transactionalmessage",
                "transactional_messageversion",
            )
        }


def assert_bad_input(result: Result) -> None:
    """What a script relies on: exit code 2, exactly one line on stderr, no traceback anywhere."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert len(result.stderr_lines) == 1, result.stderr
    assert result.stderr.strip()
    assert "Traceback" not in result.stderr + result.stdout


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def cli_template(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("cli-template")
    template = Cli(database=directory / "template.sqlite3", var_dir=directory / "var")
    migrated = template.run("migrate", "--verbosity", "0", timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    seed = SEED.format(example=str(EXAMPLE_FILE), directory=str(directory))
    seeded = template.run("shell", "--command", seed)
    assert seeded.returncode == 0, seeded.stderr
    # One self-contained file (no -wal beside it) that a plain copy reproduces, already in WAL mode
    # so that commands started together do not queue to switch it.
    connection = sqlite3.connect(template.database)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    assert (
        not Path(f"{template.database}-wal").exists() or not Path(f"{template.database}-wal").stat().st_size
    )
    return template.database


@pytest.fixture
def cli(cli_template, tmp_path) -> Cli:
    database = tmp_path / "campaign.sqlite3"
    shutil.copyfile(cli_template, database)
    return Cli(database=database, var_dir=tmp_path / "var")
