"""Every admin page a person can reach from the index, as each role, in a real browser: none
answers an error, none links the role to a page it may not open, and every one has the admin's
look (its stylesheets loaded). Links are followed, never forms: nothing is changed by the crawl."""

from __future__ import annotations

from urllib.parse import urldefrag, urlsplit

import pytest

from tests.e2e import test_admin_browser, test_admin_pages_browser
from tests.e2e.test_admin_browser import log_in
from tests.e2e.test_admin_pages_browser import opened, some_of_everything

browser = test_admin_browser.browser
_roles_and_fast_hashing = test_admin_browser._roles_and_fast_hashing
pages = test_admin_pages_browser.pages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Links that act when followed, or leave the admin's pages.
NOT_FOLLOWED = ("/admin/logout/", "/admin/jsi18n/", "/static/", "/media/")
MOST_PAGES = 400
DOWNLOADS = (".csv", ".json", ".eml")


def worth_following(path: str) -> bool:
    if not path.startswith("/admin/") or path.startswith(NOT_FOLLOWED):
        return False
    query = urlsplit(path).query
    # A list's sorts and filters are the same page with other rows: the first page of each is enough.
    return not query or query.count("&") == 0


@pytest.mark.parametrize("role", ["administrator", "marketer"])
def test_every_admin_page_reachable_from_the_index_opens_in_the_admins_look(
    browser,
    live_server,
    organization,
    settings,
    pages,
    request,
    role,
):
    some_of_everything(organization, settings)
    user = request.getfixturevalue(role)
    page = opened(pages, log_in(browser, live_server, user, "/admin/"))
    base = live_server.url
    seen: set[str] = {"/admin/"}
    queue = ["/admin/"]
    problems: list[str] = []
    visited = 0
    while queue and visited < MOST_PAGES:
        path = queue.pop(0)
        visited += 1
        if urlsplit(path).path.endswith(DOWNLOADS):  # a file, not a page: fetched in the same session
            fetched = page.context.request.get(f"{base}{path}")
            if fetched.status >= 400:
                problems.append(f"{path}: {fetched.status}")
            continue
        answer = page.goto(f"{base}{path}")
        status = answer.status if answer is not None else 0
        if status >= 400:
            problems.append(f"{path}: {status}")
            continue
        if "text/html" not in (answer.headers.get("content-type", "") if answer else ""):
            continue  # a CSV export, a file: not a page
        styled = page.evaluate(
            "[...document.styleSheets].some(sheet => { try { return sheet.cssRules.length > 0 } "
            "catch (e) { return false } })"
        )
        font = page.evaluate("getComputedStyle(document.body).fontFamily")
        if not styled or "Times" in font:
            problems.append(f"{path}: unstyled ({font})")
        for href in page.eval_on_selector_all("a[href]", "links => links.map(link => link.href)"):
            link, _ = urldefrag(href)
            parts = urlsplit(link)
            if parts.netloc and f"{parts.scheme}://{parts.netloc}" != base:
                continue
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            if target not in seen and worth_following(target):
                seen.add(target)
                queue.append(target)
    assert visited > 20, f"only {visited} pages reached from the index"
    assert problems == [], f"{role}: {problems}"
