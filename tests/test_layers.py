"""The apps depend one way (events -> messages -> campaign): tests.layers reads the imports and
model references, and this test fails the build on a new wrong-way import."""

from __future__ import annotations

from pathlib import Path

from tests.layers import violations

ROOT = Path(__file__).resolve().parents[1]

# The wrong-way imports still being taken down (issue 12), by file and target: none may be added,
# and each one removed must leave this list too (the second test says so).
KNOWN = {
    ("messages/services.py", "events.models"),
}


def test_no_import_goes_the_wrong_way_beyond_the_known_ones():
    found = violations(ROOT)
    new = [str(v) for v in found if (v.path, v.target) not in KNOWN]
    assert new == [], "imports against events -> messages -> campaign:\n" + "\n".join(new)


def test_the_known_list_shrinks_with_the_code():
    found = {(v.path, v.target) for v in violations(ROOT)}
    assert KNOWN - found == set(), f"fixed: remove them from KNOWN: {sorted(KNOWN - found)}"


def test_a_deliberately_wrong_import_is_caught(tmp_path):
    for app in ("campaign", "events", "messages"):
        (tmp_path / app).mkdir()
    (tmp_path / "campaign" / "models.py").write_text(
        "from django.db import models\n"
        "from events.models import Event\n"
        "class Note(models.Model):\n"
        '    message = models.ForeignKey("transactional.TransactionalMessage", on_delete=models.CASCADE)\n'
    )
    (tmp_path / "events" / "pipeline.py").write_text("def send():\n    from messages import services\n")
    (tmp_path / "messages" / "services.py").write_text("from campaign.models import Organization\n")
    found = sorted(str(v) for v in violations(tmp_path))
    assert found == [
        "campaign/models.py:2 goes up to events.models",
        "campaign/models.py:4 goes up to transactional.TransactionalMessage",
        "events/pipeline.py:2 imports inside a function messages",
    ]
