"""The bounds every value from outside keeps; the text limit follows its setting."""

from __future__ import annotations

from campaign import bounds


def test_a_text_is_refused_past_the_text_max_length_setting_as_it_stands(settings):
    assert bounds.text_problem("x" * 10) is None
    settings.TEXT_MAX_LENGTH = 5  # read once and kept; a change of the setting is seen at once
    assert bounds.text_problem("x" * 10) == "is longer than 5 characters"
    assert bounds.text_problem("x" * 10, max_length=20) is None
    settings.TEXT_MAX_LENGTH = 10
    assert bounds.text_problem("x" * 10) is None
