"""The admin's login: wrong passwords slowed down like wrong API secrets, optional TOTP for staff."""

from __future__ import annotations

import pytest
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from campaign import throttling
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"  # UserFactory's


@pytest.fixture(autouse=True)
def _one_minute(monkeypatch):
    window = timezone.now().replace(second=0, microsecond=0)
    monkeypatch.setattr(throttling, "_window", lambda now: window)


def log_in(client, user, password=PASSWORD, otp_token="", address="203.0.113.9"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": user.username, "password": password, "otp_token": otp_token, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def logged_in(answer) -> bool:
    return answer.status_code == 302 and answer["Location"] == "/admin/"


def test_the_login_page_offers_the_code_field(client):
    page = client.get("/admin/login/").content.decode()
    assert 'name="otp_token"' in page and 'autocomplete="one-time-code"' in page


def test_the_eleventh_wrong_password_in_a_minute_is_refused_even_when_right(client, administrator):
    staff = UserFactory(is_staff=True)
    for _ in range(10):
        assert "Please enter the correct" in log_in(client, administrator, "wrong").content.decode()
    refused = log_in(client, administrator)
    assert not logged_in(refused) and "Too many failed attempts" in refused.content.decode()
    assert logged_in(log_in(client, staff, address="198.51.100.2"))  # another user, elsewhere: fine


def test_staff_with_a_totp_device_must_give_its_code(client, administrator):
    device = TOTPDevice.objects.create(user=administrator, name="phone", confirmed=True)
    answer = log_in(client, administrator)
    assert not logged_in(answer) and "Enter the authentication code" in answer.content.decode()
    assert "not valid" in log_in(client, administrator, otp_token="000000").content.decode()
    device.refresh_from_db()
    device.throttle_reset()  # django-otp makes a device wait a second after a wrong code
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    assert logged_in(log_in(client, administrator, otp_token=code))


def test_staff_without_a_device_log_in_with_the_password_alone(client, administrator):
    assert logged_in(log_in(client, administrator))
