"""The JSON gateway client (messages.channels.http): which failures leave the outcome unknown."""

from __future__ import annotations

import socket
import threading
import time

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


def test_a_gateway_answering_a_byte_at_a_time_is_cut_at_the_timeout():
    """Each byte comes within the socket's timeout, the answer never ends: the request is cut at
    its timeout (a send's bound holds), its outcome unknown (the request was written)."""
    stop = threading.Event()

    def trickle(server: socket.socket) -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            ends = time.monotonic() + 8  # without the cut, the test fails rather than hangs
            while not stop.wait(0.2) and time.monotonic() < ends:
                try:
                    connection.sendall(b"X")
                except OSError:
                    return

    with socket.create_server(("127.0.0.1", 0)) as server:
        thread = threading.Thread(target=trickle, args=(server,), daemon=True)
        thread.start()
        started = time.monotonic()
        result = post_json(f"http://127.0.0.1:{server.getsockname()[1]}/sms", {"to": "+3361"}, timeout=1.0)
        took = time.monotonic() - started
        stop.set()
        thread.join(5)
    assert result.outcome == "temporaryFailure" and result.outcome_unknown and took < 3
