"""The API's callers, authenticated from this process's cache, and refused at once when revoked."""

from __future__ import annotations

import datetime as dt

import pytest

from campaign import auth, generations, services

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(organization) -> tuple[str, object]:
    issued = services.create_api_credential(organization=organization)
    access = services.issue_access_token(
        api_key=issued.credential.api_key, client_secret=issued.client_secret
    )
    return access.access_token, issued.credential


def test_a_known_token_costs_no_query_nor_cache_server_once_read(
    token, django_assert_num_queries, settings, monkeypatch
):
    from django.core.cache import cache

    settings.GENERATION_CHECK_SECONDS = 3600
    access_token, credential = token
    assert auth.caller_for_token(access_token).credential_id == credential.pk

    def no_cache_server(*args, **kwargs):
        raise AssertionError("the shared cache was asked")

    monkeypatch.setattr(cache, "get", no_cache_server)
    with django_assert_num_queries(0):
        assert auth.caller_for_token(access_token).api_key == credential.api_key


def test_a_token_revoked_by_another_process_is_refused_at_the_next_generation_check(token, settings):
    access_token, credential = token
    assert auth.caller_for_token(access_token) is not None  # cached here
    # Another process revokes: the database changes and the generation moves; this process's
    # cache is not told. (Within GENERATION_CHECK_SECONDS; here, at the next call.)
    settings.GENERATION_CHECK_SECONDS = 0
    type(credential).objects.filter(pk=credential.pk).update(is_active=False)
    generations.bump(generations.AUTH)
    assert auth.caller_for_token(access_token) is None


def test_a_revocation_here_is_refused_here_at_once(token, settings):
    settings.GENERATION_CHECK_SECONDS = 3600
    access_token, credential = token
    assert auth.caller_for_token(access_token) is not None
    services.revoke_credential(credential=credential)
    assert auth.caller_for_token(access_token) is None


def test_an_unknown_token_is_remembered_briefly(db, django_assert_num_queries, settings):
    settings.GENERATION_CHECK_SECONDS = 3600
    assert auth.caller_for_token("made-up") is None
    with django_assert_num_queries(0):
        assert auth.caller_for_token("made-up") is None


def test_an_expired_token_is_refused_even_from_the_cache(
    token, settings, monkeypatch, django_assert_num_queries
):
    settings.GENERATION_CHECK_SECONDS = 3600
    access_token, _ = token
    caller = auth.caller_for_token(access_token)
    later = caller.token_expires_at + dt.timedelta(seconds=1)
    monkeypatch.setattr(auth.timezone, "now", lambda: later)
    with django_assert_num_queries(0):
        assert auth.caller_for_token(access_token) is None
