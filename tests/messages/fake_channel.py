"""A fourth channel, written as a new channel is: this one module, plus its dotted path in the
TRANSACTIONAL_CHANNELS setting (test_fake_channel.py adds it). Carrier pigeons: an event names the
`loft` the bird flies to, the message is one `note`, and the backend keeps what it was given in
memory (SENT) so a test can read what left."""

from __future__ import annotations

import itertools

from messages.channels import (
    Channel,
    ChannelBackend,
    Part,
    Recipient,
    RecipientKey,
    RenderedMessage,
    SendResult,
)

SENT: list[tuple[Recipient, RenderedMessage]] = []
_numbers = itertools.count(1)


class PigeonBackend:
    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        SENT.append((recipient, rendered))
        return SendResult("sent", provider_message_id=f"pigeon-{next(_numbers)}", provider_response="flown")


class PigeonChannel(Channel):
    name = "pigeon"
    label = "Carrier pigeon"
    # The note is kept in the draft's text column; the loft in the event's registration token column.
    parts = (Part("note", column="text", label="Note"),)
    required = (("note",),)
    recipient_keys = (
        RecipientKey(
            "loft", column="registration_token", max_length=100, openapi={"type": "string", "maxLength": 100}
        ),
    )
    proof_part = "note"
    sample_address = "north-tower"

    def backend(self) -> ChannelBackend:
        return PigeonBackend()


PIGEON = PigeonChannel()
