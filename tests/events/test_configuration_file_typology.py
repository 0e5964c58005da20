"""The configuration file carries a profile-based event's typology, by name (events.configuration_file)."""

from __future__ import annotations

import copy

import pytest

from events.configuration_file import ConfigurationFileError, export_organization, import_file
from events.models import EventConfiguration, Typology
from tests.conftest import CART_EVENT
from tests.events.test_typology import WELCOME

pytestmark = pytest.mark.django_db


def file_of(organization, *events) -> dict:
    return {"organization": organization.slug, "events": [copy.deepcopy(e) for e in events]}


def test_an_event_picks_its_typology_by_name_and_the_export_says_it(organization):
    Typology.objects.create(organization=organization, name="Marketing")
    import_file(file_of(organization, {**WELCOME, "typology": "Marketing"}))
    configuration = EventConfiguration.objects.get(name="welcome")
    assert configuration.typology.name == "Marketing"
    (exported,) = export_organization(organization)["events"]
    assert exported["typology"] == "Marketing"
    assert import_file(export_organization(organization)) and export_organization(organization)["events"] == [
        exported
    ]


def test_without_a_typology_an_event_uses_the_default_and_a_reimport_without_it_clears_the_choice(
    organization,
):
    Typology.objects.create(organization=organization, name="Marketing")
    import_file(file_of(organization, {**WELCOME, "typology": "Marketing"}))
    import_file(file_of(organization, WELCOME))
    assert EventConfiguration.objects.get(name="welcome").typology is None
    assert "typology" not in export_organization(organization)["events"][0]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({**WELCOME, "typology": "Nope"}, "event welcome: typology: no typology 'Nope' in geometrixx"),
        (
            {**WELCOME, "typology": ""},
            "event welcome: typology: the name of one of the organization's typologies",
        ),
        (
            {**WELCOME, "typology": 3},
            "event welcome: typology: the name of one of the organization's typologies",
        ),
        (
            {**CART_EVENT, "typology": "Default"},
            "event cartAbandonment: typology: only profile-based events pass typology rules",
        ),
    ],
)
def test_a_wrong_typology_rejects_the_file_naming_the_event(organization, event, message):
    with pytest.raises(ConfigurationFileError, match=message):
        import_file(file_of(organization, event))
    assert not EventConfiguration.objects.exists()


def test_another_organizations_typology_is_not_found(organization, other_organization):
    Typology.objects.create(organization=other_organization, name="Theirs")
    with pytest.raises(ConfigurationFileError, match="no typology 'Theirs'"):
        import_file(file_of(organization, {**WELCOME, "typology": "Theirs"}))
