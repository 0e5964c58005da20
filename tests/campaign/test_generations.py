"""Process caches that every process drops when a generation moves: what they serve, and when not."""

from __future__ import annotations

import pytest

from campaign import generations

pytestmark = pytest.mark.django_db


@pytest.fixture
def process_cache(settings):
    settings.GENERATION_CHECK_SECONDS = 0  # every read sees the latest bump (no check interval)
    return generations.ProcessCache("tests", max_entries=3)


def test_an_entry_is_served_until_its_generation_moves(process_cache):
    generation = process_cache.generation()
    process_cache.put("key", "value", generation=generation, seconds=60)
    assert process_cache.get("key", process_cache.generation()) == "value"
    generations.bump("tests")  # anywhere: another process, the admin
    assert process_cache.get("key", process_cache.generation()) is generations.ABSENT


def test_a_value_loaded_before_a_bump_is_never_served_after_it(process_cache):
    generation = process_cache.generation()  # read, then the database is loaded from...
    generations.bump("tests")  # ...while a revocation commits...
    process_cache.put("key", "stale", generation=generation, seconds=60)  # ...and the load is kept
    assert process_cache.get("key", process_cache.generation()) is generations.ABSENT


def test_an_entry_lives_the_seconds_it_was_put_for_and_none_is_a_value(process_cache):
    generation = process_cache.generation()
    process_cache.put("gone", "value", generation=generation, seconds=0)
    process_cache.put("unknown", None, generation=generation, seconds=60)
    assert process_cache.get("gone", generation) is generations.ABSENT
    assert process_cache.get("unknown", generation) is None


def test_a_full_cache_makes_room_without_growing(process_cache):
    generation = process_cache.generation()
    process_cache.put("expired", 0, generation=generation, seconds=0)
    for key in ("a", "b"):
        process_cache.put(key, key, generation=generation, seconds=60)
    process_cache.put("c", "c", generation=generation, seconds=60)  # full: the expired one goes
    assert [process_cache.get(key, generation) for key in "abc"] == ["a", "b", "c"]
    process_cache.put("d", "d", generation=generation, seconds=60)  # full of live ones: all go
    assert [process_cache.get(key, generation) for key in "abcd"] == [generations.ABSENT] * 3 + ["d"]


def test_forgetting_the_checks_empties_every_process_cache(process_cache):
    process_cache.put("key", "value", generation=process_cache.generation(), seconds=60)
    generations.forget_checks()
    assert process_cache.get("key", process_cache.generation()) is generations.ABSENT
