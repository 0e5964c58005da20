"""SMS over SMPP against a fake SMSC on loopback (tests/smpp.py): binds, encodings, concatenation,
validity period, delivery receipts and STOP replies."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import smpplib.consts

from campaign.models import Quarantine
from messages.channels import Recipient, RenderedMessage
from messages.channels import smpp as smpp_backend
from messages.channels.smpp import SmppSmsBackend, gsm7_decode, split_text
from messages.models import Delivery
from messages.sms_replies import receipts_of
from tests.factories import ProfileFactory
from tests.smpp import FakeSmsc

NUMBER = "+33612345678"


@pytest.fixture
def smsc(settings):
    fake = FakeSmsc()
    settings.SMPP_HOST, settings.SMPP_PORT = "127.0.0.1", fake.port
    settings.SMPP_SYSTEM_ID, settings.SMPP_PASSWORD = "acme", "secret"
    settings.SMPP_SOURCE_ADDR = "Acme"
    settings.SMPP_TIMEOUT_SECONDS = 5
    settings.SMS_BACKEND = "messages.channels.smpp.SmppSmsBackend"
    smpp_backend.reset_connection()
    yield fake
    smpp_backend.reset_connection()
    fake.close()


def send(text: str, **overrides):
    rendered = RenderedMessage(parts={"text": text}, **overrides)
    return SmppSmsBackend().send(rendered, Recipient(address=NUMBER))


def sms_delivery(cart_configuration, result) -> Delivery:
    return Delivery.objects.create(
        organization=cart_configuration.organization,
        message=cart_configuration.message,
        channel="sms",
        recipient=NUMBER,
        outcome=result.outcome,
        provider_message_id=result.provider_message_id,
    )


def test_a_short_gsm7_text_is_one_submit_sm_over_a_transceiver_bind(smsc):
    result = send("Your code is 1234 {ok}")
    assert result.sent and result.provider_message_id == "msg1"
    (bind,) = smsc.binds
    assert bind.command == "bind_transceiver"
    assert (bind.system_id, bind.password) == (b"acme", b"secret")
    (pdu,) = smsc.submitted
    assert pdu.data_coding == 0 and pdu.esm_class == 0
    assert gsm7_decode(pdu.short_message) == "Your code is 1234 {ok}"
    assert pdu.destination_addr == b"33612345678" and (pdu.dest_addr_ton, pdu.dest_addr_npi) == (1, 1)
    assert pdu.source_addr == b"Acme" and pdu.source_addr_ton == 5  # alphanumeric sender
    assert pdu.registered_delivery == 1


def test_a_long_ucs2_text_goes_as_concatenated_parts_with_their_udh(smsc):
    text = "Привет! " * 20  # 160 UTF-16 units: UCS-2, three parts of at most 67
    result = send(text)
    assert result.sent
    parts = smsc.submitted
    assert len(parts) == 3
    references = set()
    decoded = ""
    for sequence, pdu in enumerate(parts, start=1):
        assert pdu.data_coding == 0x08
        assert pdu.esm_class & smpplib.consts.SMPP_GSMFEAT_UDHI
        udh, body = pdu.short_message[:6], pdu.short_message[6:]
        assert udh[:3] == b"\x05\x00\x03"  # IEI 0: 8-bit reference
        references.add(udh[3])
        assert (udh[4], udh[5]) == (3, sequence)  # count, sequence
        assert len(body) <= 67 * 2
        decoded += body.decode("utf-16-be")
    assert len(references) == 1
    assert decoded == text
    assert result.provider_message_id == "msg1"  # the first part's id


def test_a_split_never_cuts_an_escape_or_a_surrogate_pair():
    encoding, parts = split_text("a" * 152 + "€" + "b" * 10)
    assert encoding == "GSM-7" and parts[0] == "a" * 152 and parts[1].startswith("€")
    encoding, parts = split_text("x" * 66 + "😀" + "y" * 10)
    assert encoding == "UCS-2" and parts[0] == "x" * 66 and parts[1].startswith("😀")


def test_the_expiration_is_the_validity_period(smsc):
    send("Hi", expires_at=dt.datetime(2026, 12, 1, 8, 30, 15, tzinfo=dt.UTC))
    assert smsc.submitted[0].validity_period == b"261201083015000+"


@pytest.mark.django_db(transaction=True)
def test_a_delivery_receipt_is_recorded_on_the_delivery(smsc, cart_configuration):
    result = send("Hello")
    delivery = sms_delivery(cart_configuration, result)
    answer = smsc.receipt(message_id="msg1", source="33612345678")
    assert answer.status == 0
    (receipt,) = receipts_of(delivery)
    assert (receipt.provider, receipt.status, receipt.error_code) == ("smpp", "DELIVRD", "000")
    assert receipt.delivery == delivery


@pytest.mark.django_db(transaction=True)
def test_a_receipt_of_a_later_part_is_recorded_under_the_first_parts_id(smsc, cart_configuration):
    result = send("é" * 100 + "Ж")  # UCS-2, two parts: msg1, msg2
    delivery = sms_delivery(cart_configuration, result)
    smsc.receipt(message_id="msg2", source="33612345678", stat="UNDELIV", err="001")
    assert [(r.status, r.message_id) for r in receipts_of(delivery)] == [("UNDELIV", "msg1")]


@pytest.mark.django_db(transaction=True)
def test_a_stop_reply_opts_the_profile_out_and_quarantines_the_number(smsc, cart_configuration):
    organization = cart_configuration.organization
    profile = ProfileFactory(organization=organization, mobile_phone=NUMBER)
    sms_delivery(cart_configuration, send("Hello"))
    smsc.deliver(source="33612345678", short_message=b"Stop please")
    profile.refresh_from_db()
    assert profile.opted_out_sms and not profile.opted_out_email
    assert Quarantine.objects.filter(organization=organization, channel="sms", address=NUMBER).exists()


@pytest.mark.django_db(transaction=True)
def test_a_reply_that_is_no_stop_changes_nothing(smsc, cart_configuration):
    profile = ProfileFactory(organization=cart_configuration.organization, mobile_phone=NUMBER)
    sms_delivery(cart_configuration, send("Hello"))
    smsc.deliver(source="33612345678", short_message="Arrêtez pas, merci".encode("utf-16-be"), data_coding=8)
    profile.refresh_from_db()
    assert not profile.opted_out_sms and not Quarantine.objects.exists()


def test_a_lost_bind_is_bound_again_on_the_next_send(smsc):
    assert send("one").sent
    reader = smpp_backend.connection().reader
    smsc._conn.shutdown(2)  # the SMSC drops the connection
    reader.join(10)  # the reader saw it
    assert not reader.is_alive()
    assert send("two").sent
    assert len(smsc.binds) == 2


def test_an_unreachable_smsc_is_a_temporary_failure(settings, smsc):
    smsc.close()
    result = send("Hello")
    assert result.outcome == "temporaryFailure" and "SMPP" in result.provider_response


def test_a_long_messages_parts_share_one_deadline_and_a_lost_answer_is_an_unknown_outcome(settings, smsc):
    """The SMSC answers the first part and not the others: the send gives up within one timeout
    (not one per part), the SMSC may have taken the message (no failover), and the backend's bound
    counts connect, bind and that one deadline."""
    settings.SMPP_TIMEOUT_SECONDS = 1
    assert send("warm-up").sent  # the bind is made: what follows is the parts' answers alone
    smsc.answered_submits = len(smsc.submitted) + 1
    started = time.monotonic()
    result = send("Привет! " * 40)  # 320 UTF-16 units: five parts
    elapsed = time.monotonic() - started
    assert len(smsc.submitted) == 1 + 5
    assert result.outcome == "temporaryFailure" and result.outcome_unknown and result.provider_fault
    assert "no submit_sm_resp" in result.provider_response
    assert elapsed < 2.5  # one timeout of 1 s, where one per unanswered part would be 4 s
    assert SmppSmsBackend().max_send_seconds == 3 * 1 + 1
    assert SmppSmsBackend(timeout=20).max_send_seconds == 3 * 20 + 1


def test_a_refused_connection_is_safe_to_fail_over(smsc):
    smsc.close()
    result = send("Hello")
    assert result.provider_fault and not result.outcome_unknown


@pytest.mark.parametrize(
    ("status", "outcome", "quarantines"),
    [
        (smpplib.consts.SMPP_ESME_RTHROTTLED, "temporaryFailure", True),
        (smpplib.consts.SMPP_ESME_RINVDSTADR, "permanentFailure", True),
        (smpplib.consts.SMPP_ESME_RINVMSGLEN, "permanentFailure", False),
    ],
)
def test_a_refused_submit_is_classified(smsc, status, outcome, quarantines):
    smsc.submit_status = status
    result = send("Hello")
    assert result.outcome == outcome
    if outcome == "permanentFailure":
        assert result.quarantines is quarantines


def test_sender_threads_share_one_bind(smsc):
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(send(f"m{i}"))) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.sent for r in results)
    assert len({r.provider_message_id for r in results}) == 8
    assert len(smsc.binds) == 1


@pytest.mark.django_db(transaction=True)
def test_a_receipt_that_outruns_the_recording_of_its_send_still_shows_on_the_delivery(
    smsc, cart_configuration
):
    result = send("Hello")
    smsc.receipt(message_id="msg1", source="33612345678")  # before the delivery is written
    delivery = sms_delivery(cart_configuration, result)
    (receipt,) = receipts_of(delivery)
    assert receipt.status == "DELIVRD" and receipt.delivery is None


def test_every_gsm7_character_the_editor_counts_encodes_and_decodes():
    from messages.channels.smpp import GSM7_TABLE, gsm7_encode
    from messages.channels.sms import GSM7_BASIC, GSM7_EXTENSION

    assert len(GSM7_TABLE) == 128
    assert (GSM7_TABLE.index("@"), GSM7_TABLE.index("Δ"), GSM7_TABLE.index("¡"), GSM7_TABLE.index("à")) == (
        0x00, 0x10, 0x40, 0x7F,
    )  # fmt: skip
    text = "".join(sorted(GSM7_BASIC | GSM7_EXTENSION))
    assert gsm7_decode(gsm7_encode(text)) == text
    assert gsm7_encode("€") == b"\x1be"
