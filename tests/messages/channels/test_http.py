"""The JSON gateway client (messages.channels.http): which failures leave the outcome unknown."""

from __future__ import annotations

import socket

from messages.channels.http import post_json
from tests.smtp import free_port


def test_a_gateway_that_takes_the_request_and_never_answers_is_an_unknown_outcome():
    """The request was written and no answer came: the gateway may have sent the SMS."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        result = post_json(f"http://127.0.0.1:{port}/sms", {"to": "+33612345678"}, timeout=0.5)
    assert result.outcome == "temporaryFailure" and result.provider_fault and result.outcome_unknown


def test_a_refused_connection_is_safe_to_fail_over():
    result = post_json(f"http://127.0.0.1:{free_port()}/sms", {"to": "+33612345678"}, timeout=0.5)
    assert result.outcome == "temporaryFailure" and result.provider_fault and not result.outcome_unknown
