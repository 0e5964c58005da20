"""The apps depend one way (events -> messages -> campaign): tests.layers reads the imports and
model references, and this test fails the build on a new wrong-way import."""

from __future__ import annotations

from pathlib import Path

from tests.layers import violations

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_goes_the_wrong_way_and_none_hides_in_a_function():
    found = [str(v) for v in violations(ROOT)]
    assert found == [], "imports against events -> messages -> campaign:\n" + "\n".join(found)


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
