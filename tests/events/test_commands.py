"""import_events and export_events, as operators and CI run them."""

from __future__ import annotations

import copy
import io
import json
import logging

import pytest
from django.core.management import CommandError, call_command

from events.configuration_file import export_organization
from events.models import EventConfiguration
from tests.cli import EXAMPLE_FILE, assert_bad_input, write_json
from tests.conftest import CART_EVENT
from tests.events.test_configuration_file import BAD_EVENTS, bad_file

NEW_EVENT = {
    "name": "orderShipped",
    "label": "Order shipped",
    "channel": "email",
    "targeting": "event",
    "fields": [{"name": "orderId", "type": "text", "required": True}],
    "message": {
        "subject": "Order {{ ctx.orderId }} shipped",
        "html": "<p>On its way</p>",
        "text": "On its way",
    },
}


def a_file(tmp_path, *events, organization="geometrixx", name="events.json"):
    return write_json(tmp_path / name, {"organization": organization, "events": list(events)})


def statuses(cli, name: str) -> tuple[str, str]:
    ((configuration, message),) = cli.rows(
        "SELECT c.status, m.status FROM events_eventconfiguration c "
        "JOIN transactional_transactionalmessage m ON c.message_id = m.id WHERE c.name = ?",
        (name,),
    )
    return configuration, message


# --- As a user runs them -----------------------------------------------------------------------


def test_import_events_prints_each_event_saved_as_a_draft(cli, tmp_path):
    result = cli.run("import_events", str(a_file(tmp_path, NEW_EVENT, organization="acme")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["EVTorderShipped saved"]
    assert result.stderr == ""
    assert statuses(cli, "orderShipped") == ("draft", "draft")


def test_import_events_with_publish_publishes_the_event_and_its_message(cli, tmp_path):
    result = cli.run("import_events", str(EXAMPLE_FILE), "--publish")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["EVTcartAbandonment published", "EVTwelcome published"]
    assert result.stderr == ""  # stderr is for errors: no INFO logs at the default verbosity
    assert statuses(cli, "welcome") == ("published", "published")


def test_bad_event_files_exit_2_with_one_line_and_import_nothing(cli, tmp_path):
    """One file per way of failing (reading, parsing, checking, publishing); every kind of bad
    event is covered in process below and in test_configuration_file."""
    broken = tmp_path / "broken.json"
    broken.write_text('{"organization": "geometrixx", "events": [', encoding="utf-8")
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"organization": "géométrixx"}'.encode("latin-1"))
    unknown_type = {**NEW_EVENT, "fields": [{"name": "orderId", "type": "uuid"}]}
    without_subject = {**NEW_EVENT, "name": "second", "message": {"html": "<p>Hi</p>"}}
    cases = {
        "bad JSON": ([str(broken)], "is not valid JSON: Expecting value (line 1, column 43)"),
        "missing file": ([str(tmp_path / "missing.json")], "Cannot read"),
        "not UTF-8": ([str(latin1)], "not UTF-8"),
        "not an object": ([str(write_json(tmp_path / "list.json", [NEW_EVENT]))], "JSON object"),
        "unknown type": (
            [str(a_file(tmp_path, unknown_type, name="t.json"))],
            "event orderShipped, fields[0] (orderId): unknown type 'uuid'",
        ),
        "variants not an object": (
            [str(a_file(tmp_path, {**NEW_EVENT, "message": {"variants": ["fr"]}}, name="v.json"))],
            "message.variants",
        ),
        "From outside the sender domains": (
            [
                str(
                    a_file(
                        tmp_path,
                        {
                            **NEW_EVENT,
                            "message": {**NEW_EVENT["message"], "from": {"address": "security@paypal.com"}},
                        },
                        name="f.json",
                    )
                )
            ],
            "event orderShipped, message.from.address: 'security@paypal.com' is not in the organization's "
            "sender domains (geometrixx.example)",
        ),
        "unpublishable message, after a good event": (
            [str(a_file(tmp_path, NEW_EVENT, without_subject, name="p.json")), "--publish"],
            "event second: The message needs a subject. (nothing was imported)",
        ),
    }
    before = cli.counts()
    results = cli.run_all([["import_events", *arguments] for arguments, _ in cases.values()])
    for (case, (_, expected)), result in zip(cases.items(), results, strict=True):
        assert_bad_input(result)
        assert expected in result.stderr, (case, result.stderr)
        assert result.stdout == "", case
    assert cli.counts() == before


def test_export_events_output_imports_back_to_the_same_export(cli, tmp_path):
    exported = cli.run("export_events", "geometrixx")
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert data["organization"] == "geometrixx"
    assert [event["name"] for event in data["events"]] == ["cartAbandonment", "welcome"]
    path = tmp_path / "exported.json"
    path.write_text(exported.stdout, encoding="utf-8")
    reimported = cli.run("import_events", str(path))
    assert reimported.returncode == 0, reimported.stderr
    assert cli.run("export_events", "geometrixx").stdout == exported.stdout


def test_export_events_of_an_unknown_organization_exits_2(cli):
    unknown, missing_argument = cli.run_all([["export_events", "nobody"], ["export_events"]])
    assert_bad_input(unknown)
    assert "No organization 'nobody'" in unknown.stderr
    assert_bad_input(missing_argument)
    assert "organization" in missing_argument.stderr


# --- In process --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_events_from_the_command_publishes_the_examples(organization):
    out = io.StringIO()
    call_command("import_events", str(EXAMPLE_FILE), "--publish", stdout=out)
    assert out.getvalue().splitlines() == ["EVTcartAbandonment published", "EVTwelcome published"]
    welcome = EventConfiguration.objects.get(organization=organization, name="welcome")
    assert welcome.is_published and welcome.message.status == "published"
    assert welcome.published_schema["reconciliation"] == {"eventField": "email", "profileField": "email"}


@pytest.mark.django_db
def test_a_refused_import_names_the_file_and_says_nothing_was_imported(organization, tmp_path):
    path = a_file(tmp_path, NEW_EVENT, {**NEW_EVENT, "name": "second", "channel": "pigeon"})
    with pytest.raises(CommandError) as refused:
        call_command("import_events", str(path), stdout=io.StringIO())
    assert refused.value.returncode == 2
    assert str(refused.value) == (
        f"{path}: event second: channel: unknown channel 'pigeon'; one of email, sms, push"
        " (nothing was imported)"
    )
    assert not EventConfiguration.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_every_kind_of_bad_file_fails_the_command_with_code_2_and_one_line(
    cart_configuration, tmp_path, case
):
    path = write_json(tmp_path / "events.json", bad_file(BAD_EVENTS[case][0]))
    before = list(EventConfiguration.objects.values_list("name", "label", "status"))
    with pytest.raises(CommandError) as refused:
        call_command("import_events", str(path), "--publish", stdout=io.StringIO())
    message = str(refused.value)
    assert refused.value.returncode == 2
    assert "\n" not in message
    assert message.startswith(f"{path}: event bad") and message.endswith("(nothing was imported)")
    assert list(EventConfiguration.objects.values_list("name", "label", "status")) == before


@pytest.mark.django_db
def test_changing_the_channel_of_an_event_fails_the_command(cart_configuration, tmp_path):
    as_sms = {**copy.deepcopy(CART_EVENT), "channel": "sms", "message": {"text": "Hi"}}
    with pytest.raises(CommandError, match="event cartAbandonment: channel and targeting") as refused:
        call_command("import_events", str(a_file(tmp_path, NEW_EVENT, as_sms)), stdout=io.StringIO())
    assert refused.value.returncode == 2
    assert list(EventConfiguration.objects.values_list("name", "channel")) == [("cartAbandonment", "email")]


@pytest.mark.django_db
def test_export_events_prints_the_organizations_events_as_the_import_format(
    cart_configuration, other_organization
):
    out = io.StringIO()
    call_command("export_events", "geometrixx", stdout=out)
    exported = json.loads(out.getvalue())
    assert exported == export_organization(cart_configuration.organization)
    assert exported["events"][0]["message"]["subject"] == CART_EVENT["message"]["subject"]
    out = io.StringIO()
    call_command("export_events", "acme", stdout=out)
    assert json.loads(out.getvalue()) == {"organization": "acme", "events": []}


@pytest.mark.django_db
def test_export_events_keeps_non_ascii_text_readable(organization, tmp_path):
    event = {**NEW_EVENT, "label": "Commande expédiée"}
    call_command("import_events", str(a_file(tmp_path, event)), stdout=io.StringIO())
    out = io.StringIO()
    call_command("export_events", "geometrixx", stdout=out)
    assert "Commande expédiée" in out.getvalue()


@pytest.mark.django_db
def test_service_logs_show_only_at_verbosity_2_and_logging_is_restored_after(organization, caplog):
    caplog.set_level(logging.INFO)
    call_command("import_events", str(EXAMPLE_FILE), "--publish", stdout=io.StringIO())
    assert not [r for r in caplog.records if r.name.startswith("events")]
    logging.getLogger("events.services").info("after the command")
    assert caplog.records[-1].getMessage() == "after the command"
    caplog.clear()
    call_command("import_events", str(EXAMPLE_FILE), "--publish", verbosity=2, stdout=io.StringIO())
    assert any("published EVTwelcome" in r.getMessage() for r in caplog.records)
