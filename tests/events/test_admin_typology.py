"""Typologies, their rules and fatigue rules in the admin: administrators build them without code,
each checked when saved (form errors naming the field), scoped to their organization."""

from __future__ import annotations

import pytest
from django.urls import reverse

from events import pipeline
from events.models import (
    DUPLICATE_WINDOW_MAX_MINUTES,
    FATIGUE_MAX_MESSAGES,
    FATIGUE_MAX_PERIOD_HOURS,
    FatigueRule,
    Typology,
    TypologyRule,
)
from tests.admin_forms import change_form_data
from tests.conftest import publish_events
from tests.events.test_typology import WELCOME, accept
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db

RULE_ADD = reverse("admin:events_typologyrule_add")
FATIGUE_ADD = reverse("admin:events_fatiguerule_add")
TYPOLOGY_ADD = reverse("admin:events_typology_add")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def signed_in(client, administrator):
    client.force_login(administrator)
    return client


def default_of(organization) -> Typology:
    return Typology.objects.get(organization=organization, is_default=True)


def post_rule(client, organization, *, conditions=(), **values):
    page = client.get(RULE_ADD)
    assert page.status_code == 200
    data = change_form_data(page, typology=str(default_of(organization).pk), **values)
    data["conditions-TOTAL_FORMS"] = str(max(1, len(conditions)))
    for n, (field, operator, value) in enumerate(conditions):
        data.update(
            {
                f"conditions-{n}-field": field,
                f"conditions-{n}-operator": operator,
                f"conditions-{n}-value": value,
                f"conditions-{n}-position": str(n),
            }
        )
    return client.post(RULE_ADD, data)


def errors(response) -> dict:
    form = response.context["adminform"].form
    found = {name: " ".join(messages) for name, messages in form.errors.items()}
    for formset in response.context["inline_admin_formsets"]:
        for n, inline_errors in enumerate(formset.formset.errors):
            for name, messages in inline_errors.items():
                found[f"conditions-{n}-{name}"] = " ".join(messages)
        if formset.formset.non_form_errors():
            found["conditions"] = " ".join(formset.formset.non_form_errors())
    return found


def test_an_administrator_builds_a_profile_filter_without_code(signed_in, organization):
    answer = post_rule(
        signed_in,
        organization,
        kind="filter",
        code="no_minors",
        name="No minors",
        combine="or",
        conditions=[("age", "lessThan", "18"), ("country", "equals", "")],
    )
    assert answer.status_code == 200 and errors(answer) == {
        "conditions-1-value": "This operator needs a value."
    }
    answer = post_rule(
        signed_in,
        organization,
        kind="filter",
        code="no_minors",
        name="No minors",
        combine="or",
        conditions=[("age", "lessThan", "18"), ("country", "isEmpty", "")],
    )
    assert answer.status_code == 302, errors(answer)
    rule = TypologyRule.objects.get(code="no_minors")
    assert rule.typology == default_of(organization) and rule.combine == "or"
    assert [(c.field, c.operator, c.value) for c in rule.conditions.all()] == [
        ("age", "lessThan", "18"),
        ("country", "isEmpty", ""),
    ]


@pytest.mark.parametrize(
    ("condition", "field", "message"),
    [
        (("1st", "equals", "x"), "field", "A profile field name"),
        (("a" * 65, "equals", "x"), "field", "at most 64 characters"),
        (("age", "greaterThan", "ten"), "value", "'ten' is not a number."),
        (("age", "isNotEmpty", "x"), "value", "takes no value"),
        (("age", "equals", "x" * 201), "value", "at most 200 characters"),
        (("age", "between", "1"), "operator", "Select a valid choice"),
    ],
)
def test_a_wrong_condition_is_a_form_error_naming_its_field(
    signed_in, organization, condition, field, message
):
    answer = post_rule(signed_in, organization, kind="filter", code="c", name="C", conditions=[condition])
    assert answer.status_code == 200
    assert message.lower() in errors(answer)[f"conditions-0-{field}"].lower()
    assert not TypologyRule.objects.exists()


def test_a_filter_needs_a_condition_and_a_duplicate_rule_a_window_in_bounds(signed_in, organization):
    answer = post_rule(signed_in, organization, kind="filter", code="c", name="C")
    assert errors(answer) == {"conditions": "A profile filter needs at least one condition."}
    for window in ("", "0", str(DUPLICATE_WINDOW_MAX_MINUTES + 1)):
        answer = post_rule(
            signed_in, organization, kind="duplicate", code="d", name="D", window_minutes=window
        )
        assert "window" in errors(answer)["window_minutes"]
    answer = post_rule(signed_in, organization, kind="filter", code="c", name="C", window_minutes="5")
    assert errors(answer)["window_minutes"] == "Only a duplicate rule has a window."
    answer = post_rule(
        signed_in,
        organization,
        kind="duplicate",
        code="d",
        name="D",
        window_minutes=str(DUPLICATE_WINDOW_MAX_MINUTES),
    )
    assert answer.status_code == 302, errors(answer)


def test_a_rule_code_is_unique_in_its_typology_and_not_a_built_in_one(signed_in, organization):
    for code in ("denylist", "fatigue", "Not-A-Code"):
        answer = post_rule(signed_in, organization, kind="duplicate", code=code, name="D", window_minutes="5")
        assert "code" in errors(answer)
    assert (
        post_rule(
            signed_in, organization, kind="duplicate", code="dup", name="D", window_minutes="5"
        ).status_code
        == 302
    )
    answer = post_rule(signed_in, organization, kind="duplicate", code="dup", name="E", window_minutes="5")
    assert errors(answer)["code"] == "This typology has a rule with this code already."


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"max_messages": "0", "period_hours": "24"}, "max_messages"),
        ({"max_messages": str(FATIGUE_MAX_MESSAGES + 1), "period_hours": "24"}, "max_messages"),
        ({"max_messages": "3", "period_hours": "0"}, "period_hours"),
        ({"max_messages": "3", "period_hours": str(FATIGUE_MAX_PERIOD_HOURS + 1)}, "period_hours"),
    ],
)
def test_a_fatigue_rule_out_of_bounds_is_a_form_error(signed_in, values, field):
    page = signed_in.get(FATIGUE_ADD)
    answer = signed_in.post(FATIGUE_ADD, change_form_data(page, name="Cap", **values))
    assert answer.status_code == 200 and field in answer.context["adminform"].form.errors
    assert not FatigueRule.objects.exists()


def test_an_administrator_adds_a_fatigue_rule_to_the_own_organization(signed_in, organization):
    page = signed_in.get(FATIGUE_ADD)
    data = change_form_data(page, name="One a day", channel="email", max_messages="1", period_hours="24")
    assert signed_in.post(FATIGUE_ADD, data).status_code == 302
    assert FatigueRule.objects.get().organization == organization


def test_the_default_typology_stays_one_and_cannot_be_deleted(signed_in, organization):
    default = default_of(organization)
    delete = reverse("admin:events_typology_delete", args=[default.pk])
    assert signed_in.get(delete).status_code == 403
    page = signed_in.get(TYPOLOGY_ADD)
    answer = signed_in.post(TYPOLOGY_ADD, change_form_data(page, name="Second", is_default="on"))
    assert "is_default" in answer.context["adminform"].form.errors
    answer = signed_in.post(TYPOLOGY_ADD, change_form_data(page, name="Second"))
    assert answer.status_code == 302 and Typology.objects.filter(organization=organization).count() == 2


def test_typologies_and_rules_are_scoped_to_the_organization(signed_in, organization, other_organization):
    theirs = default_of(other_organization)
    rule = TypologyRule.objects.create(
        typology=theirs, kind="duplicate", code="d", name="D", window_minutes=5
    )
    assert signed_in.get(reverse("admin:events_typology_change", args=[theirs.pk])).status_code == 302
    assert signed_in.get(reverse("admin:events_typologyrule_change", args=[rule.pk])).status_code == 302
    listed = signed_in.get(reverse("admin:events_typology_changelist")).context["cl"].result_list
    assert list(listed) == [default_of(organization)]
    choices = signed_in.get(RULE_ADD).context["adminform"].form.fields["typology"].queryset
    assert list(choices) == [default_of(organization)]
    # A configuration picks among its organization's typologies only.
    configuration = publish_events(organization, WELCOME)[0]
    page = signed_in.get(reverse("admin:events_eventconfiguration_change", args=[configuration.pk]))
    assert list(page.context["adminform"].form.fields["typology"].queryset) == [default_of(organization)]


def test_a_marketer_may_not_open_the_rules(client, marketer):
    client.force_login(marketer)
    for name in ("typology", "typologyrule", "fatiguerule"):
        assert client.get(reverse(f"admin:events_{name}_changelist")).status_code == 403


def test_the_event_page_and_the_list_say_which_rule_ignored_an_event(signed_in, organization):
    configuration = publish_events(organization, WELCOME)[0]
    ProfileFactory(organization=organization, email="jane@example.com", opted_out_email=True)
    event = accept(configuration, {"email": "jane@example.com", "plan": "gold"})
    assert pipeline.process(event.pk) == "ignored"
    page = signed_in.get(reverse("admin:events_event_change", args=[event.pk]))
    assert "denylist: Address on denylist" in page.content.decode()
    listed = signed_in.get(reverse("admin:events_event_changelist"))
    assert "denylist: Address on denylist" in listed.content.decode()


def test_an_administrator_picks_the_typology_of_a_profile_based_configuration(signed_in, organization):
    configuration = publish_events(organization, WELCOME)[0]
    chosen = Typology.objects.create(organization=organization, name="Marketing")
    url = reverse("admin:events_eventconfiguration_change", args=[configuration.pk])
    answer = signed_in.post(url, change_form_data(signed_in.get(url), typology=str(chosen.pk)))
    assert answer.status_code == 302
    configuration.refresh_from_db()
    assert configuration.typology == chosen and configuration.is_published


def test_a_superuser_cannot_give_a_configuration_another_organizations_typology(
    client, organization, other_organization, admin_user
):
    configuration = publish_events(organization, WELCOME)[0]
    theirs = default_of(other_organization)
    client.force_login(admin_user)
    url = reverse("admin:events_eventconfiguration_change", args=[configuration.pk])
    answer = client.post(url, change_form_data(client.get(url), typology=str(theirs.pk)))
    assert answer.status_code == 200
    assert answer.context["adminform"].form.errors["typology"] == [
        "Pick a typology of this event type's organization."
    ]


def test_a_filter_has_at_most_20_conditions(signed_in, organization):
    conditions = [(f"field{n}", "isEmpty", "") for n in range(21)]
    answer = post_rule(signed_in, organization, kind="filter", code="c", name="C", conditions=conditions)
    assert answer.status_code == 200 and "20" in errors(answer)["conditions"]
    assert not TypologyRule.objects.exists()
    answer = post_rule(signed_in, organization, kind="filter", code="c", name="C", conditions=conditions[:20])
    assert answer.status_code == 302 and TypologyRule.objects.get().conditions.count() == 20
