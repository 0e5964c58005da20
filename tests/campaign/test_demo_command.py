"""`manage.py demo` before it serves: an address it cannot use is one line and exit 2 (no banner, nothing
written), and what it seeds is examples/events.json, the README's sample."""

from __future__ import annotations

import socket

import pytest

from tests.cli import Cli, assert_bad_input


@pytest.fixture
def busy_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_busy_port_is_one_line_and_exit_2_before_any_banner(cli, busy_port):
    before = cli.counts()
    result = cli.run("demo", "--port", str(busy_port))
    assert_bad_input(result)
    assert result.stdout == ""
    assert f"port {busy_port} on 127.0.0.1 is in use by another program" in result.stderr
    assert f"--port {busy_port + 1}" in result.stderr
    assert cli.counts() == before


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--host", "nonexistent.invalid"], "--host nonexistent.invalid: not in ALLOWED_HOSTS"),
        (["--host", "192.0.2.1"], "--host 192.0.2.1: not in ALLOWED_HOSTS"),
        (["--port", "70000"], "--port 70000: a port is a number from 1 to 65535"),
    ],
)
def test_a_bad_host_or_port_is_one_line_and_exit_2(cli, arguments, says):
    result = cli.run("demo", *arguments)
    assert_bad_input(result)
    assert result.stdout == "" and says in result.stderr


def test_a_host_allowed_but_not_of_this_machine_is_one_line_and_exit_2(cli, monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", "192.0.2.1")  # TEST-NET-1: never an address of this machine
    answer = cli.run("demo", "--host", "192.0.2.1")
    assert_bad_input(answer)
    assert answer.stdout == "" and "--host 192.0.2.1: cannot listen there" in answer.stderr


def test_the_demo_seeds_the_readmes_sample(tmp_path):
    fresh = Cli(database=tmp_path / "fresh.sqlite3", var_dir=tmp_path / "var")
    result = fresh.run("demo", "--no-serve", timeout=180)
    assert result.returncode == 0, result.stderr
    assert "Transactional messaging demo" in result.stdout
    fields = dict(
        fresh.rows(
            "SELECT f.name, f.required FROM events_eventfield f JOIN events_eventconfiguration c "
            "ON c.id = f.configuration_id WHERE c.name = 'cartAbandonment' AND f.collection = ''"
        )
    )
    assert fields == {"firstName": 1, "lastProduct": 1, "cartAmount": 0, "AC_language": 0}
    (reply_to,) = fresh.rows(
        "SELECT m.reply_to FROM transactional_transactionalmessage m JOIN events_eventconfiguration c "
        "ON c.message_id = m.id WHERE c.name = 'cartAbandonment'"
    )[0]
    assert reply_to == "help@geometrixx.example"
