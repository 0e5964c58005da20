"""An organization's providers in a real browser (an administrator): choosing a kind shows only its
fields; the provider saved, its password shows as "set", never its value."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from messages import org_providers
from messages.models import OrganizationProvider
from tests.e2e import test_admin_browser
from tests.e2e.test_admin_browser import log_in

browser = test_admin_browser.browser
_roles_and_fast_hashing = test_admin_browser._roles_and_fast_hashing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "browser-smtp-Pa55word"


def test_an_administrator_adds_an_smtp_provider_and_sees_its_password_masked(
    browser, live_server, administrator, organization, settings
):
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True  # the host below is on loopback
    page = log_in(browser, live_server, administrator, "/admin/transactional/organizationprovider/add/")
    page.select_option("#id_kind", "twilio")
    expect(page.locator("fieldset.provider-kind-twilio")).to_be_visible()
    expect(page.locator("fieldset.provider-kind-smtp")).to_be_hidden()
    page.select_option("#id_kind", "smtp")
    expect(page.locator("fieldset.provider-kind-smtp")).to_be_visible()
    expect(page.locator("fieldset.provider-kind-twilio")).to_be_hidden()
    page.fill("#id_name", "own-smtp")
    page.fill("#id_smtp__host", "127.0.0.1")
    page.fill("#id_smtp__port", "2525")
    page.fill("#id_smtp__password", PASSWORD)
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    expect(page.locator("fieldset.provider-kind-smtp")).to_contain_text("set: leave empty to keep it")
    assert PASSWORD not in page.content()
    assert page.locator("#id_smtp__password").input_value() == ""
    provider = OrganizationProvider.objects.get(organization=organization)
    assert provider.options["port"] == 2525 and org_providers.secrets_of(provider) == {"password": PASSWORD}
    page.goto(f"{live_server.url}/admin/transactional/organizationprovider/")
    expect(page.locator("#result_list")).to_contain_text("password: set")
    assert PASSWORD not in page.content()
