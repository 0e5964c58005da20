"""The staff's login to the admin: wrong passwords are counted per username and per address like
wrong API secrets (campaign.throttling), and a staff member who has a TOTP device (django-otp)
must also give its current code. Two-factor is optional: without a device, the password suffices."""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp import devices_for_user

from campaign import services, throttling


class StaffLoginForm(AdminAuthenticationForm):
    otp_token = forms.CharField(
        label="Authentication code",
        required=False,
        max_length=16,
        help_text="Only if two-factor authentication is on for you: the code your app shows.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def clean(self):
        limits = services.login_failure_limits(
            username=self.cleaned_data.get("username") or "",
            address=self.request.META.get("REMOTE_ADDR", "") if self.request else "",
        )
        wait = throttling.retry_after(limits)
        if wait is not None:
            raise forms.ValidationError(
                f"Too many failed attempts: try again in {wait} seconds.", code="slow_down"
            )
        try:
            cleaned = super().clean()
            self._check_second_factor()
        except forms.ValidationError:
            throttling.record_failure(limits)
            raise
        return cleaned

    def _check_second_factor(self) -> None:
        user = self.get_user()
        devices = list(devices_for_user(user, confirmed=True)) if user is not None else []
        if not devices:
            return
        token = (self.cleaned_data.get("otp_token") or "").strip()
        if not token:
            raise forms.ValidationError("Enter the authentication code of your app.", code="token_required")
        if not any(device.verify_token(token) for device in devices):
            raise forms.ValidationError("This authentication code is not valid.", code="invalid_token")
