"""A fake SMSC on loopback built on smpplib's PDUs: it accepts transceiver binds, answers each
submit_sm with a message id (keeping the PDU), and on demand sends a delivery receipt or a mobile
originated message (`deliver_sm`) to the bound client, then waits for its deliver_sm_resp."""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

import smpplib.consts
import smpplib.smpp


class _Peer:
    """The PDUs' `client`: sequence numbers of the PDUs the SMSC starts."""

    allow_unknown_opt_params = True

    def __init__(self) -> None:
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


def read_pdu(sock: socket.socket) -> Any:
    head = _recv(sock, 4)
    (length,) = struct.unpack(">L", head)
    raw = head + _recv(sock, length - 4)
    return smpplib.smpp.parse_pdu(raw, client=_Peer(), allow_unknown_opt_params=True)


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class FakeSmsc:
    def __init__(self, *, submit_status: int = smpplib.consts.SMPP_ESME_ROK) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.submit_status = submit_status
        self.answered_submits: int | None = None  # answer only this many submit_sm (None: all)
        self.submitted: list[Any] = []  # submit_sm PDUs, as received
        self.binds: list[Any] = []
        self.unbinds = 0  # unbind PDUs received
        self.closed_connections = 0  # connections the client closed (or lost)
        self.deliver_answers: list[Any] = []  # deliver_sm_resp PDUs
        self.changed = threading.Condition()
        self._peer = _Peer()
        self._conn: socket.socket | None = None
        self._write = threading.Lock()
        self._next_id = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _send(self, conn: socket.socket, pdu: Any) -> None:
        with self._write:
            conn.sendall(pdu.generate())

    def _answer(self, conn: socket.socket, command: str, request: Any, **fields: Any) -> None:
        pdu = smpplib.smpp.make_pdu(command, client=self._peer, **fields)
        pdu.sequence = request.sequence
        self._send(conn, pdu)

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                pdu = read_pdu(conn)
                with self.changed:
                    if pdu.command == "bind_transceiver":
                        self.binds.append(pdu)
                        self._conn = conn
                        self._answer(conn, "bind_transceiver_resp", pdu, system_id="fake")
                    elif pdu.command == "submit_sm":
                        self.submitted.append(pdu)
                        self._next_id += 1
                        status = self.submit_status
                        message_id = f"msg{self._next_id}" if status == 0 else ""
                        if self.answered_submits is None or len(self.submitted) <= self.answered_submits:
                            self._answer(conn, "submit_sm_resp", pdu, message_id=message_id, status=status)
                    elif pdu.command == "deliver_sm_resp":
                        self.deliver_answers.append(pdu)
                    elif pdu.command == "enquire_link":
                        self._answer(conn, "enquire_link_resp", pdu)
                    elif pdu.command == "unbind":
                        self.unbinds += 1
                        self._answer(conn, "unbind_resp", pdu)
                    self.changed.notify_all()
        except (ConnectionError, OSError):
            conn.close()
            with self.changed:
                self.closed_connections += 1
                self.changed.notify_all()

    def wait(self, predicate: Any, timeout: float = 10) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), "the SMSC never saw it"

    def deliver(
        self, *, source: str, short_message: bytes, esm_class: int = 0, data_coding: int = 0, **extra: Any
    ) -> Any:
        """Send a deliver_sm to the bound client and wait for its answer."""
        assert self._conn is not None, "nobody is bound"
        pdu = smpplib.smpp.make_pdu(
            "deliver_sm",
            client=self._peer,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr=source,
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="33700000000",
            esm_class=esm_class,
            data_coding=data_coding,
            short_message=short_message,
            **extra,
        )
        before = len(self.deliver_answers)
        self._send(self._conn, pdu)
        self.wait(lambda: len(self.deliver_answers) > before)
        return self.deliver_answers[-1]

    def receipt(self, *, message_id: str, source: str, stat: str = "DELIVRD", err: str = "000") -> Any:
        text = (
            f"id:{message_id} sub:001 dlvrd:001 submit date:2611292200 done date:2611292201 "
            f"stat:{stat} err:{err} text:"
        )
        return self.deliver(
            source=source, short_message=text.encode(), esm_class=0x04, receipted_message_id=message_id
        )

    def close(self) -> None:
        self._closed = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread: nothing more accepted
        except OSError:
            pass
        self.listener.close()
        if self._conn is not None:
            try:
                self._conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._conn.close()
