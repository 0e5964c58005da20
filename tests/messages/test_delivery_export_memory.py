"""The CSV export of 100,000 deliveries streams: the rows are read in chunks and written out as they
come, so the memory it takes stays far below the size of the file (measured with tracemalloc)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from django.urls import reverse

from messages.models import Delivery

pytestmark = pytest.mark.django_db
ROWS = 100_000


def test_exporting_100k_deliveries_takes_bounded_memory(client, marketer, cart_configuration):
    message = cart_configuration.message
    answer = "250 2.0.0 Ok: queued as " + "Q" * 120  # a provider's answer, as long as real ones are
    Delivery.objects.bulk_create(
        (
            Delivery(
                organization_id=cart_configuration.organization_id, message=message,
                version=message.live_version, channel="email", recipient=f"person{n}@example.com",
                outcome="sent", provider_message_id=f"<{n}@example.com>", provider_response=answer,
                content={"subject": "not exported", "html": "<p>" + "x" * 500 + "</p>"},
            )
            for n in range(ROWS)
        ),
        batch_size=5000,
    )  # fmt: skip
    client.force_login(marketer)
    gc.collect()
    tracemalloc.start()
    try:
        response = client.get(reverse("admin:transactional_delivery_export"))
        assert response.streaming
        size = lines = 0
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == ROWS + 1  # every delivery, and the header
    print(f"CSV of {ROWS:,} deliveries: {size / 2**20:.1f} MiB written, peak {peak / 2**20:.1f} MiB traced")
    assert size > 20 * 2**20
    # Holding the rows (or the file) would take more than the file's size; a chunk takes a few MiB
    # (6.1 MiB measured, the same for 10,000 rows as for 100,000).
    assert peak < 10 * 2**20, f"peak {peak / 2**20:.1f} MiB"
