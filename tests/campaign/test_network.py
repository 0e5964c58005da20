"""campaign.network: connections made to the addresses checked, each tried in the resolver's order."""

from __future__ import annotations

import socket

import pytest

from campaign import network


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 only: 127.0.0.2 (loopback too) refuses its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server
    server.close()


def test_a_host_whose_first_address_refuses_is_reached_at_the_next(listener, monkeypatch):
    port = listener.getsockname()[1]
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ("127.0.0.2", "127.0.0.1")]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
    connection = network.pinned_socket("mail.example.com", port, allow_private=True, timeout=2)
    try:
        assert connection.getpeername() == ("127.0.0.1", port)
    finally:
        connection.close()
    http = network.pinned_connection("http", "gateway.example.com", port, allow_private=True, timeout=2)
    http.connect()
    try:
        assert http.sock.getpeername() == ("127.0.0.1", port)
    finally:
        http.close()


def test_no_address_answering_is_the_last_ones_error(listener, monkeypatch):
    port = listener.getsockname()[1]
    listener.close()
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ("127.0.0.2", "127.0.0.1")]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
    with pytest.raises(ConnectionRefusedError):
        network.pinned_socket("mail.example.com", port, allow_private=True, timeout=2)


def test_every_address_is_checked_before_any_is_tried(monkeypatch):
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 25)) for ip in ("93.184.216.34", "10.0.0.5")]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
    with pytest.raises(network.HostRefused) as refused:
        network.pinned_socket("mail.example.com", 25, allow_private=False, timeout=2)
    assert refused.value.address == "10.0.0.5" and "10.0.0.5" not in str(refused.value)
