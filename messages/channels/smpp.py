"""SMS over SMPP 3.4 (smpplib): one transceiver bind per worker process, owner and SMSC account
(host, port, credentials: two providers of SMS_PROVIDERS keep two binds), shared by the worker's
sender threads, bound again after a lost connection. The owner (BindOwner) is the installation or an
organization's provider: binds of two owners are never shared, and what arrives on a bind (a
receipt, a STOP) is its owner's (messages.sms_replies). A changed provider's binds are closed
(close_binds_of, from messages.org_providers).

* The text goes as GSM-7 when every character allows it (messages.channels.sms: the editor's count),
  else as UCS-2 (data_coding 8). Longer than one SMS (160 / 70 characters), it is cut into parts of
  153 / 67 characters, each with a user data header (esm_class UDHI; IEI 0x00: reference, count,
  sequence), never splitting a GSM-7 escape or a UTF-16 surrogate pair.
* Each part asks for a delivery receipt (registered_delivery 1). The delivery keeps the first
  part's message id (submit_sm_resp); a receipt of any part is recorded under that id.
* The event's `expiration` is the validity period (absolute time, UTC).
* The bind's reader thread reads every PDU: submit_sm_resp wakes the sender waiting for it (matched
  by sequence number), a `deliver_sm` receipt (esm_class 0x04) is recorded on its delivery, any
  other `deliver_sm` is a reply (a STOP opts out: messages.sms_replies).

A lost connection, a refused bind, a timeout, a throttled or busy SMSC: temporary failure
(retried), and the provider's fault (messages.providers: the next provider is tried). An invalid
destination address: permanent, the number quarantined. Any other refusal: permanent, the number
stays usable.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NamedTuple

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp
from django.conf import settings
from django.db import close_old_connections

from campaign import network
from messages.channels import Recipient, RenderedMessage, SendResult, backend_option, setting_or
from messages.channels.sms import GSM7_EXTENSION, sms_length

logger = logging.getLogger(__name__)
TEMPORARY, PERMANENT, SENT = "temporaryFailure", "permanentFailure", "sent"

# GSM 03.38 as septet values (unpacked: one septet a byte, as SMPP's data_coding 0 carries them).
GSM7_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_ESCAPED = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
GSM7_DECODE_ESCAPED = {v: k for k, v in GSM7_ESCAPED.items()}
DATA_CODING = {"GSM-7": 0x00, "UCS-2": 0x08}
RETRIED_STATUSES = {
    smpplib.consts.SMPP_ESME_RTHROTTLED,
    smpplib.consts.SMPP_ESME_RMSGQFUL,
    smpplib.consts.SMPP_ESME_RSYSERR,
    smpplib.consts.SMPP_ESME_RSUBMITFAIL,
}
QUARANTINING_STATUSES = {smpplib.consts.SMPP_ESME_RINVDSTADR}
RECEIPT_PATTERN = re.compile(r"id:(?P<id>\S+).*?stat:(?P<stat>\w+)(?:.*?err:(?P<err>\w+))?", re.S | re.I)
KNOWN_PARTS = 10000  # part message id -> first part's id, remembered for the receipts of later parts


def gsm7_encode(text: str) -> bytes:
    out = bytearray()
    for char in text:
        if char in GSM7_ESCAPED:
            out += bytes((0x1B, GSM7_ESCAPED[char]))
        else:
            out.append(GSM7_TABLE.index(char))
    return bytes(out)


def gsm7_decode(data: bytes) -> str:
    chars, escaped = [], False
    for byte in data:
        if escaped:
            chars.append(GSM7_DECODE_ESCAPED.get(byte, " "))
            escaped = False
        elif byte == 0x1B:
            escaped = True
        elif byte < len(GSM7_TABLE):
            chars.append(GSM7_TABLE[byte])
    return "".join(chars)


def decode_short_message(data: bytes, data_coding: int) -> str:
    if data_coding == 0x08:
        return data.decode("utf-16-be", errors="replace")
    if data_coding in (0x01, 0x03):  # IA5 (ASCII), Latin-1
        return data.decode("latin-1")
    return gsm7_decode(data)


def _units(char: str, encoding: str) -> int:
    if encoding == "GSM-7":
        return 2 if char in GSM7_EXTENSION else 1
    return len(char.encode("utf-16-le")) // 2


def split_text(text: str) -> tuple[str, list[str]]:
    """(encoding, the parts' texts): one part when it fits one SMS, else parts of 153 / 67 units,
    a character never cut in two."""
    length = sms_length(text)
    if length.segments <= 1:
        return length.encoding, [text]
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for char in text:
        units = _units(char, length.encoding)
        if used + units > length.per_segment:
            parts.append("".join(current))
            current, used = [], 0
        current.append(char)
        used += units
    parts.append("".join(current))
    return length.encoding, parts


def encode(text: str, encoding: str) -> bytes:
    return gsm7_encode(text) if encoding == "GSM-7" else text.encode("utf-16-be")


def validity_period(expires_at: dt.datetime | None) -> str | None:
    """SMPP's absolute time format, UTC: YYMMDDhhmmss + tenths + quarter hours from UTC + '+'."""
    if expires_at is None:
        return None
    return expires_at.astimezone(dt.UTC).strftime("%y%m%d%H%M%S") + "000+"


def address_fields(address: str, prefix: str) -> dict[str, Any]:
    """TON/NPI of an address: international (E.164) for digits, alphanumeric for a sender name."""
    name = "source_addr" if prefix == "source_addr" else "destination_addr"
    digits = address.removeprefix("+")
    if digits.isdigit():
        return {f"{prefix}_ton": 1, f"{prefix}_npi": 1, name: digits}
    return {f"{prefix}_ton": 5, f"{prefix}_npi": 0, name: address[:11]}


class _Sequence:
    """smpplib's sequence numbers, drawn under a lock (sender threads and the reader draw them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    @property
    def sequence(self) -> int:
        return self._value

    def next_sequence(self) -> int:
        with self._lock:
            self._value = self._value % 0x7FFFFFFF + 1
            return self._value


class _Client(smpplib.client.Client):  # type: ignore[misc]
    """A client whose writes are whole PDUs, one thread at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, sequence_generator=_Sequence(), allow_unknown_opt_params=True, **kwargs)
        self._write_lock = threading.Lock()

    def send_pdu(self, p: Any) -> bool:
        with self._write_lock:
            return bool(super().send_pdu(p))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00")
    return "" if value is None else str(value)


def connect_address(host: str, port: int, *, organizations: bool) -> str:
    """The IPv4 address (smpplib's socket is IPv4) a bind connects to, resolved and checked at each
    (re)connection: the installation's own SMSC (its settings) may be anywhere; an organization's
    provider's (`organizations`) may not resolve to a private, loopback or link-local address unless
    PROVIDER_ALLOW_PRIVATE_TARGETS (a DNS rebinding after its form was saved reaches nothing).
    campaign.network.HostRefused (an OSError) otherwise."""
    allow = not organizations or bool(getattr(settings, "PROVIDER_ALLOW_PRIVATE_TARGETS", False))
    return network.checked_addresses(host, port, allow_private=allow, family=socket.AF_INET)[0]


class BindOwner(NamedTuple):
    """Whose bind: an organization's provider (its organization, its receipts' provider key, the
    name its deliveries carry), or the installation's (the SMPP_* settings and SMS_PROVIDERS). What
    arrives on a bind (a receipt, a STOP) is its owner's: binds of two owners are never shared."""

    organization_id: int | None = None
    provider: str = "smpp"  # messages.sms_replies.provider_key
    provider_name: str = ""


INSTALLATION = BindOwner()


class Unanswered(Exception):
    """A submit_sm went out and its answer did not come: the SMSC may have taken the message."""


class SmppConnection:
    """The process's bind: opened on the first send, opened again after it is lost."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        system_id: str,
        password: str,
        system_type: str,
        timeout: float,
        owner: BindOwner = INSTALLATION,
    ) -> None:
        self.owner = owner
        self.host, self.port = host, port
        self.system_id, self.password, self.system_type = system_id, password, system_type
        self.timeout = timeout
        self._bind_lock = threading.Lock()
        self._client: _Client | None = None
        self._closed = False  # closed for good (close): a late send does not bind it again
        self.reader: threading.Thread | None = None  # the current bind's reader
        # sequence number -> (its answer to come, the answers of its message's parts)
        self._pending: dict[int, tuple[Future[Any], list[Future[Any]]]] = {}
        self._pending_lock = threading.Lock()
        self._reference_lock = threading.Lock()
        self._reference = 0
        self._first_part: collections.OrderedDict[str, str] = collections.OrderedDict()

    # --- the bind ----------------------------------------------------------------------------

    def _bound(self) -> _Client:
        with self._bind_lock:
            if self._client is not None:
                return self._client
            if self._closed:
                raise smpplib.exceptions.ConnectionError("this bind was closed (its provider changed)")
            client = _Client(self.host, self.port, timeout=self.timeout)
            client.set_message_sent_handler(self._submit_answered)
            client.set_message_received_handler(self._delivered)
            client.set_error_pdu_handler(lambda pdu: None)  # a refused submit: its sender decides
            try:
                client.host = connect_address(  # resolved and checked now
                    self.host, self.port, organizations=self.owner.organization_id is not None
                )
                client.connect()
                client.bind_transceiver(
                    system_id=self.system_id, password=self.password, system_type=self.system_type
                )
            except Exception:
                if client._socket is not None:
                    client.disconnect()
                raise
            self._client = client
            self.reader = threading.Thread(target=self._read, args=(client,), name="smpp-reader", daemon=True)
            self.reader.start()
            return client

    def _lost(self, client: _Client, error: BaseException) -> None:
        with self._bind_lock:
            if self._client is client:
                self._client = None
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001 - closing what is already broken
                pass
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for future, _group in pending.values():
            future.set_exception(smpplib.exceptions.ConnectionError(str(error) or "connection lost"))

    def _read(self, client: _Client) -> None:
        while True:
            try:
                client.read_once()  # a read timeout sends enquire_link: the bind kept alive
            except Exception as error:  # noqa: BLE001 - any failure ends this bind
                logger.warning("SMPP bind lost: %s", error)
                self._lost(client, error)
                return

    def close(self) -> None:
        with self._bind_lock:
            client, self._client = self._client, None
            self._closed = True
        if client is not None:
            try:  # unbind, without waiting for its answer (the reader would take it)
                client.send_pdu(smpplib.smpp.make_pdu("unbind", client=client))
            except Exception:  # noqa: BLE001
                pass
            self._lost(client, smpplib.exceptions.ConnectionError("closed"))

    # --- what the reader receives -------------------------------------------------------------

    def _submit_answered(self, pdu: Any, **kwargs: Any) -> None:
        with self._pending_lock:
            entry = self._pending.pop(pdu.sequence, None)
            if entry is None:
                return
            future, group = entry
            future.set_result(pdu)
            # A receipt of a later part is recorded under the first part's id (the delivery's):
            # known here, on the reader, before it reads the receipt.
            if group[0].done() and not group[0].exception():
                first = _text(group[0].result().message_id)
                for part in group[1:]:
                    if part.done() and not part.exception():
                        self._first_part[_text(part.result().message_id)] = first
                while len(self._first_part) > KNOWN_PARTS:
                    self._first_part.popitem(last=False)

    def _delivered(self, pdu: Any, **kwargs: Any) -> int | None:
        close_old_connections()
        try:
            if (pdu.esm_class or 0) & 0x3C == 0x04:
                self._receipt(pdu)
            else:
                from messages import sms_replies

                text = decode_short_message(pdu.short_message or b"", pdu.data_coding or 0)
                sms_replies.reply_received(
                    sender=_text(pdu.source_addr), text=text, organization_id=self.owner.organization_id
                )
        except Exception:
            logger.exception("SMPP deliver_sm not recorded")
            return smpplib.consts.SMPP_ESME_RSYSERR  # the SMSC delivers it again later
        finally:
            close_old_connections()
        return None

    def _receipt(self, pdu: Any) -> None:
        from messages import sms_replies

        text = _text(pdu.short_message)
        match = RECEIPT_PATTERN.search(text)
        message_id = _text(getattr(pdu, "receipted_message_id", None)) or (match["id"] if match else "")
        status = match["stat"] if match else _text(getattr(pdu, "message_state", ""))
        with self._pending_lock:
            first = self._first_part.get(message_id, message_id)
        sms_replies.record_receipt(
            provider=self.owner.provider,
            organization_id=self.owner.organization_id,
            provider_name=self.owner.provider_name,
            message_id=first,
            status=status or "UNKNOWN",
            error_code=(match["err"] or "") if match else "",
            raw=text,
        )

    # --- sending ------------------------------------------------------------------------------

    def next_reference(self) -> int:
        with self._reference_lock:
            self._reference = (self._reference + 1) % 256
            return self._reference

    def submit(self, parts: list[dict[str, Any]]) -> list[Any]:
        """Send the parts' submit_sm and wait for their answers (PDUs, in order), all of them within
        one `timeout` (not one per part: a long message's send stays within its bound). Unanswered
        once a submit_sm went out and its answer did not come (the SMSC may have taken it)."""
        client = self._bound()
        futures: list[Future[Any]] = [Future() for _ in parts]
        written = False
        try:
            for fields, future in zip(parts, futures, strict=True):
                pdu = smpplib.smpp.make_pdu("submit_sm", client=client, **fields)
                with self._pending_lock:
                    self._pending[pdu.sequence] = (future, futures)
                client.send_pdu(pdu)
                written = True
        except (smpplib.exceptions.ConnectionError, OSError) as error:
            self._lost(client, error)
            if written:
                raise Unanswered(f"the bind was lost after a submit_sm: {error}") from error
            raise
        deadline = time.monotonic() + self.timeout
        try:
            return [future.result(timeout=max(deadline - time.monotonic(), 0.0)) for future in futures]
        except FutureTimeout:
            with self._pending_lock:  # answers that never came: forgotten
                for sequence in [k for k, (f, _) in self._pending.items() if f in futures]:
                    del self._pending[sequence]
            raise Unanswered("no submit_sm_resp in time") from None
        except smpplib.exceptions.ConnectionError as error:  # the bind lost before the answers
            raise Unanswered(f"the bind was lost before the submit_sm_resp: {error}") from None


class BindParameters(NamedTuple):
    """What makes one bind: two providers (or organizations) with the same keep one bind."""

    host: str
    port: int
    system_id: str
    password: str
    system_type: str
    timeout: float


def settings_parameters() -> BindParameters:
    return BindParameters(
        host=settings.SMPP_HOST,
        port=settings.SMPP_PORT,
        system_id=settings.SMPP_SYSTEM_ID,
        password=settings.SMPP_PASSWORD,
        system_type=settings.SMPP_SYSTEM_TYPE,
        timeout=settings.SMPP_TIMEOUT_SECONDS,
    )


BindKey = tuple[BindOwner, BindParameters]
_connections: dict[BindKey, SmppConnection] = {}
_connection_lock = threading.Lock()


def connection(parameters: BindParameters | None = None, owner: BindOwner = INSTALLATION) -> SmppConnection:
    """This process's bind for this owner and these parameters (default: the SMPP_* settings'); one
    per distinct owner and parameters (a forked worker child makes its own: the parent's sockets are
    not shared)."""
    parameters = parameters or settings_parameters()
    with _connection_lock:
        found = _connections.get((owner, parameters))
        if found is None:
            found = _connections[(owner, parameters)] = SmppConnection(**parameters._asdict(), owner=owner)
        return found


def close_binds_of(organization_id: int, *, keep: Iterable[BindKey] = ()) -> int:
    """Close this process's binds of an organization's providers but those kept (its providers'
    binds after a change: a deleted, disabled or edited provider's bind and reader thread do not
    stay for the rest of the process). How many were closed."""
    kept = set(keep)
    with _connection_lock:
        gone = [k for k in _connections if k[0].organization_id == organization_id and k not in kept]
        closing = [_connections.pop(k) for k in gone]
    for bind in closing:
        bind.close()
    return len(closing)


def _forget_in_child() -> None:
    """A forked child never uses its parent's binds (one socket, one reader each: the parent's)."""
    global _connections, _connection_lock
    _connections, _connection_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def reset_connection() -> None:
    """Close every bind of this process (tests; a worker process's end)."""
    with _connection_lock:
        current = list(_connections.values())
        _connections.clear()
    for bind in current:
        bind.close()


class SmppSmsBackend:
    """SMPP through one SMSC account. Each option (a provider's `options` in SMS_PROVIDERS) defaults
    to its SMPP_* setting, read when the bind is made; `source_addr` is the sender of a message
    whose organization names none (SMPP_SOURCE_ADDR)."""

    waits_on_network = True  # the bind is shared by the sender threads, each waits on its answers

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        system_id: str | None = None,
        password: str | None = None,
        system_type: str | None = None,
        source_addr: str | None = None,
        timeout: float | None = None,
        owner: BindOwner = INSTALLATION,
    ) -> None:
        name = "SmppSmsBackend"
        self.owner = owner  # an organization's provider's: messages.provider_kinds
        self.host = backend_option(name, "host", host, str)
        self.port = backend_option(name, "port", port, int, low=1, high=65535)
        self.system_id = backend_option(name, "system_id", system_id, str)
        self.password = backend_option(name, "password", password, str)
        self.system_type = backend_option(name, "system_type", system_type, str)
        self.source_addr = backend_option(name, "source_addr", source_addr, str)
        self.timeout = backend_option(name, "timeout", timeout, float, low=0.1, high=120)

    @staticmethod
    def send_seconds(timeout: float) -> float:
        """Connect, bind, then every part's answer within one timeout (SmppConnection.submit)."""
        return 3 * float(timeout) + 1

    @property
    def max_send_seconds(self) -> float:
        return self.send_seconds(setting_or(self.timeout, "SMPP_TIMEOUT_SECONDS"))

    def parameters(self) -> BindParameters:
        return BindParameters(
            host=setting_or(self.host, "SMPP_HOST"),
            port=setting_or(self.port, "SMPP_PORT"),
            system_id=setting_or(self.system_id, "SMPP_SYSTEM_ID"),
            password=setting_or(self.password, "SMPP_PASSWORD"),
            system_type=setting_or(self.system_type, "SMPP_SYSTEM_TYPE"),
            timeout=setting_or(self.timeout, "SMPP_TIMEOUT_SECONDS"),
        )

    def bind_key(self) -> BindKey:
        return (self.owner, self.parameters())

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        text = rendered.parts.get("text", "")
        encoding, texts = split_text(text)
        bind = connection(self.parameters(), self.owner)
        sender = rendered.from_name or setting_or(self.source_addr, "SMPP_SOURCE_ADDR")
        common: dict[str, Any] = {
            **address_fields(sender, "source_addr"),
            **address_fields(recipient.address, "dest_addr"),
            "data_coding": DATA_CODING[encoding],
            "registered_delivery": 1,
        }
        period = validity_period(rendered.expires_at)
        if period:
            common["validity_period"] = period
        if len(texts) == 1:
            parts = [{**common, "esm_class": 0, "short_message": encode(text, encoding)}]
        else:
            reference = bind.next_reference()
            parts = [
                {
                    **common,
                    "esm_class": smpplib.consts.SMPP_GSMFEAT_UDHI,
                    "short_message": bytes((0x05, 0x00, 0x03, reference, len(texts), index))
                    + encode(part, encoding),
                }
                for index, part in enumerate(texts, start=1)
            ]
        try:
            answers = bind.submit(parts)
        except Unanswered as error:  # maybe sent: never sent at once through another provider
            return SendResult(
                TEMPORARY, provider_response=f"SMPP: {error}"[:500], provider_fault=True, outcome_unknown=True
            )
        except (
            TimeoutError,
            smpplib.exceptions.ConnectionError,
            smpplib.exceptions.PDUError,
            OSError,
        ) as error:
            # No bind (refused, dropped, a refused login: bind_transceiver's error), the SMSC's fault.
            return SendResult(
                TEMPORARY,
                provider_response=f"SMPP: {error or type(error).__name__}"[:500],
                provider_fault=True,
            )
        refused = next((a for a in answers if a.status != smpplib.consts.SMPP_ESME_ROK), None)
        ids = [_text(a.message_id) for a in answers]
        if refused is not None:
            status = int(refused.status)
            description = smpplib.consts.DESCRIPTIONS.get(status, "unknown status")
            response = f"SMPP status {status:#04x}: {description}"
            if status in RETRIED_STATUSES:  # throttled, queue full, system error: the SMSC's state
                return SendResult(TEMPORARY, provider_response=response, provider_fault=True)
            return SendResult(
                PERMANENT, provider_response=response, quarantines=status in QUARANTINING_STATUSES
            )
        return SendResult(
            SENT,
            provider_message_id=ids[0],
            provider_response=f"SMPP {encoding}, {len(ids)} part(s): {' '.join(ids)}"[:2000],
        )
