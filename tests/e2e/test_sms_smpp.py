"""End to end: an SMS event through the real worker over SMPP to a fake SMSC on loopback: a long
UCS-2 text arrives as concatenated parts, the SMSC's delivery receipt is recorded on the delivery
by the worker's bind, and a STOP reply opts the profile out."""

from __future__ import annotations

import pytest

from campaign.models import Quarantine
from messages.models import Delivery
from messages.sms_replies import receipts_of
from tests.conftest import publish_events
from tests.e2e.stack import stack_processes_for, wait_until
from tests.e2e.test_event_flow import final_status, post_event
from tests.factories import ProfileFactory
from tests.smpp import FakeSmsc

pytestmark = [pytest.mark.e2e]
NUMBER = "+33612345678"
CODE = {
    "name": "otpCode",
    "channel": "sms",
    "fields": [{"name": "code", "type": "text"}],
    "message": {"text": "Ваш код {{ ctx.code }}. " * 11},
}
CODE_URL = "/geometrixx/campaign/mcgeometrixx/EVTotpCode"


@pytest.fixture(scope="module")
def smsc():
    fake = FakeSmsc()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def stack_processes(django_db_setup, django_db_blocker, smtp, smsc, tmp_path_factory):
    """The stack of conftest.py, its SMS channel on the SMPP backend bound to the fake SMSC."""
    log_dir = tmp_path_factory.mktemp("smpp")
    smpp = {
        "SMS_BACKEND": "messages.channels.smpp.SmppSmsBackend",
        "SMPP_HOST": "127.0.0.1",
        "SMPP_PORT": str(smsc.port),
        "SMPP_SYSTEM_ID": "acme",
        "SMPP_PASSWORD": "secret",
        "SMPP_SOURCE_ADDR": "Acme",
    }
    yield from stack_processes_for(django_db_blocker, smtp_port=smtp.port, log_dir=log_dir, **smpp)


def test_the_worker_sends_a_long_sms_over_smpp_records_its_receipt_and_a_stop(stack, geometrixx, smsc):
    publish_events(geometrixx, dict(CODE))
    profile = ProfileFactory(organization=geometrixx, mobile_phone=NUMBER)
    headers = stack.token_headers(geometrixx)
    pkey = post_event(stack, headers, {"mobilePhone": NUMBER, "ctx": {"code": "4821"}}, url=CODE_URL)
    assert final_status(stack, headers, pkey, url=CODE_URL) == "processed"

    parts = smsc.submitted
    assert len(parts) == 3 and len(smsc.binds) == 1
    text = ""
    for sequence, pdu in enumerate(parts, start=1):
        assert pdu.data_coding == 0x08 and pdu.destination_addr == b"33612345678"
        assert pdu.short_message[:3] == b"\x05\x00\x03" and tuple(pdu.short_message[4:6]) == (3, sequence)
        text += pdu.short_message[6:].decode("utf-16-be")
    assert text == "Ваш код 4821. " * 11
    delivery = Delivery.objects.get(channel="sms")
    assert delivery.provider_message_id == "msg1"

    smsc.receipt(message_id="msg3", source="33612345678")  # the last part's receipt
    wait_until(lambda: receipts_of(delivery).exists(), timeout=10, what="the receipt recorded")
    (receipt,) = receipts_of(delivery)
    assert (receipt.status, receipt.message_id, receipt.delivery_id) == ("DELIVRD", "msg1", delivery.pk)

    answer = smsc.deliver(source="33612345678", short_message=b"STOP")
    assert answer.status == 0
    profile.refresh_from_db()
    assert profile.opted_out_sms
    assert Quarantine.objects.filter(organization=geometrixx, channel="sms", address=NUMBER).exists()
