"""The message editor in a real browser, as the marketer (issue 15's editor gaps): the preview follows
the unsaved edits through the product's renderer, at a desktop or mobile width and in the language
chosen; the SMS characters that force UCS-2 are marked with the segment count; the language variants
are edited per language. A failing test leaves screenshots of its pages in var/screenshots."""

from __future__ import annotations

import copy

import pytest
from playwright.sync_api import expect

from tests.conftest import CART_EVENT, publish_events
from tests.e2e import test_admin_browser, test_admin_pages_browser
from tests.e2e.test_admin_browser import log_in
from tests.e2e.test_admin_pages_browser import message_url, opened

browser = test_admin_browser.browser
_roles_and_fast_hashing = test_admin_browser._roles_and_fast_hashing
pages = test_admin_pages_browser.pages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MULTILINGUAL_CART = {
    **copy.deepcopy(CART_EVENT),
    "fields": [*CART_EVENT["fields"], {"name": "AC_language", "type": "text"}],
}


def watch_policy(page) -> list[str]:
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    return violations


def save(page) -> None:
    """Save and continue once the preview has followed the last edit (nothing moves under the
    click), and wait for the page that answers (the last one said the same)."""
    expect(page.locator("#live-preview")).to_have_attribute("data-state", "idle")
    with page.expect_navigation():
        page.click("input[name=_continue]")


def test_marketer_sees_the_unsaved_edits_rendered_at_both_widths_and_in_each_language(
    browser, live_server, marketer, organization, pages
):
    configuration = publish_events(organization, copy.deepcopy(MULTILINGUAL_CART))[0]
    message = configuration.message
    page = opened(pages, log_in(browser, live_server, marketer, message_url(configuration)))
    violations = watch_policy(page)
    page.reload()
    preview = page.locator("#live-preview")
    output = preview.locator("#preview-output")
    expect(preview.locator("#preview-variant-used")).to_have_text("Default content")

    # Typing re-renders the unsaved subject and HTML with the sample data; nothing is saved.
    page.fill("#id_subject", "Unsaved for {{ ctx.firstName }}")
    page.fill("#id_html", "<p>Hi {{ ctx.firstName }}</p><script>document.title = 'ran'</script>")
    expect(output).to_contain_text("Subject: Unsaved for FirstName value")
    page.fill("#id_from_name", "The Shop")
    expect(output.locator(".preview-sender")).to_contain_text("From: The Shop <")
    frame = page.frame_locator("#preview-output iframe")
    expect(frame.locator("body")).to_have_text("Hi FirstName value")
    expect(output.locator("iframe")).to_have_attribute("sandbox", "")
    assert page.title() != "ran"
    message.refresh_from_db()
    assert message.subject == "{{ ctx.firstName }}, your cart is waiting"

    # Desktop, then mobile width.
    iframe = output.locator("iframe")
    assert iframe.bounding_box()["width"] == pytest.approx(800, abs=2)
    page.click("#preview-mobile")
    expect(page.locator("#preview-mobile")).to_have_attribute("aria-pressed", "true")
    assert iframe.bounding_box()["width"] == pytest.approx(375, abs=2)
    page.click("#preview-desktop")
    assert iframe.bounding_box()["width"] == pytest.approx(800, abs=2)

    # A template error: said inline, with its line; the last preview stays.
    page.fill("#id_html", "<p>Hi</p>\n{% if %}")
    errors = preview.locator("#preview-errors")
    expect(errors).to_contain_text("html, line 2:")
    expect(frame.locator("body")).to_have_text("Hi FirstName value")
    page.fill("#id_html", "<p>Hello {{ ctx.firstName }}</p>")
    expect(frame.locator("body")).to_have_text("Hello FirstName value")
    expect(errors).to_be_hidden()

    # Sample data the event API would refuse names its field; good sample data is rendered.
    page.click(".preview-sample-data summary")
    page.fill("#preview-ctx", '{"firstName": 5}')
    expect(errors).to_contain_text("ctx.firstName:")
    page.fill("#preview-ctx", '{"firstName": "Zoé", "AC_language": "fr-CA"}')
    expect(frame.locator("body")).to_have_text("Hello Zoé")

    # A French variant added in its own fieldset: the picker lists it, and fr-CA chooses it.
    # Scrolled to first: clicked straight from the sample data's textarea, the click's point was
    # taken before the page scrolled and landed in the preview's frame.
    page.locator("#add-variant").scroll_into_view_if_needed()
    page.click("#add-variant")
    page.fill("#variant-0-language", "fr")
    page.fill("#variant-0-subject", "Bonjour {{ ctx.firstName }}")
    language = preview.locator("#preview-language")
    expect(language.locator("option")).to_have_text(["As the sample data chooses", "Default content", "fr"])
    expect(output).to_contain_text("Subject: Bonjour Zoé")
    expect(preview.locator("#preview-variant-used")).to_have_text("Variant used: fr")
    language.select_option("")
    expect(output).to_contain_text("Subject: Unsaved for Zoé")
    expect(preview.locator("#preview-variant-used")).to_have_text("Default content")
    language.select_option("fr")
    expect(output).to_contain_text("Subject: Bonjour Zoé")
    expect(frame.locator("body")).to_have_text("Hello Zoé")  # the part the variant leaves out

    save(page)
    expect(page.locator(".messagelist")).to_contain_text("changed successfully")
    message.refresh_from_db()
    assert message.variants == {"fr": {"subject": "Bonjour {{ ctx.firstName }}"}}
    assert violations == []


def test_marketer_edits_variants_per_language_and_reads_their_errors_by_language(
    browser, live_server, marketer, organization, pages
):
    configuration = publish_events(organization, copy.deepcopy(MULTILINGUAL_CART))[0]
    message = configuration.message
    message.variants = {"fr": {"subject": "Bonjour {{ ctx.firstName }}"}}
    message.save()
    page = opened(pages, log_in(browser, live_server, marketer, message_url(configuration)))

    # Each language in its fieldset with the channel's parts; the JSON itself is not shown.
    expect(page.locator("#id_variants")).to_be_hidden()
    french = page.locator("fieldset.variant-language").first
    expect(french.locator("legend")).to_have_text("Language fr")
    expect(page.locator("#variant-0-subject")).to_have_value("Bonjour {{ ctx.firstName }}")
    expect(french.locator("label")).to_have_text(["Language code", "Subject", "HTML", "Text"])

    # A German variant with an unknown field and a code no event could choose: refused at save,
    # by language and part, its fieldset marked.
    page.click("#add-variant")
    page.fill("#variant-1-language", "de-DE-x")
    page.fill("#variant-1-text", "Hallo {{ ctx.vorname }}")
    save(page)
    errors = page.locator(".field-variants .errorlist")
    expect(errors).to_contain_text("variants.de-DE-x.text")
    expect(errors).to_contain_text("vorname")
    expect(errors).to_contain_text("variants.de-DE-x: not a language code")
    expect(page.locator("fieldset.variant-has-error legend")).to_have_text("Language de-DE-x")
    message.refresh_from_db()
    assert message.variants == {"fr": {"subject": "Bonjour {{ ctx.firstName }}"}}

    # Corrected, saved; then French removed and saved: the same JSON field as ever.
    page.fill("#variant-1-language", "de")
    page.fill("#variant-1-text", "Hallo ")  # the event's field inserted in the variant's part
    page.locator("#event-fields").get_by_role("button", name="firstName").click()
    expect(page.locator("#variant-1-text")).to_have_value("Hallo {{ ctx.firstName }}")
    save(page)
    expect(page.locator(".messagelist")).to_contain_text("changed successfully")
    message.refresh_from_db()
    assert message.variants == {
        "fr": {"subject": "Bonjour {{ ctx.firstName }}"},
        "de": {"text": "Hallo {{ ctx.firstName }}"},
    }
    page.locator("fieldset.variant-language", has_text="Language fr").locator(".remove-variant").click()
    expect(page.locator("fieldset.variant-language legend")).to_have_text(["Language de"])
    save(page)
    expect(page.locator(".messagelist")).to_contain_text("changed successfully")
    message.refresh_from_db()
    assert message.variants == {"de": {"text": "Hallo {{ ctx.firstName }}"}}

    # The same language twice: a form error, nothing lost silently.
    page.click("#add-variant")
    page.fill("#variant-1-language", "de")
    page.fill("#variant-1-text", "Noch einmal")
    save(page)
    expect(page.locator(".field-variants .errorlist")).to_contain_text("The language de is given twice")
    # Both still in the editor, each in its fieldset: the marketer chooses which one goes.
    expect(page.locator("fieldset.variant-language legend")).to_have_text(["Language de", "Language de"])
    expect(page.locator("#variant-1-text")).to_have_value("Noch einmal")
    message.refresh_from_db()
    assert message.variants == {"de": {"text": "Hallo {{ ctx.firstName }}"}}


def test_marketer_sees_the_sms_characters_that_force_ucs2_with_the_segment_count(
    browser, live_server, marketer, organization, pages
):
    configuration = publish_events(
        organization,
        {
            "name": "otp",
            "channel": "sms",
            "fields": [{"name": "code", "type": "text"}],
            "message": {"text": "Code {{ ctx.code }}"},
        },
    )[0]
    page = opened(pages, log_in(browser, live_server, marketer, message_url(configuration)))
    length = page.locator("#preview-output #preview-sms-length")
    expect(length).to_contain_text("GSM-7, 1 segment")

    page.fill("#id_text", "Reçu {{ ctx.code }} : 5 € 🎉")
    expect(page.locator("#preview-sms mark.sms-ucs2")).to_have_text(["ç", "🎉"])
    expect(page.locator("#preview-sms mark.sms-extension")).to_have_text(["€"])
    expect(page.locator("#preview-sms-ucs2")).to_contain_text("These characters force UCS-2")
    expect(length).to_contain_text("UCS-2, 1 segment (70 characters per segment)")

    # Beyond 70 UCS-2 characters: two segments, said as the text grows.
    page.fill("#id_text", "ç" + "x" * 70)
    expect(length).to_contain_text("71 characters, UCS-2, 2 segments (67 characters per segment)")
    page.fill("#id_text", "Plain text {{ ctx.code }}")
    expect(page.locator("#preview-sms mark")).to_have_count(0)
    expect(length).to_contain_text("GSM-7, 1 segment")
