"""System checks of the messages app: a wrong list of providers stops every process at start; a
provider whose send could outlive an event's claim is warned about."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured


def providers_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Each channel's `<CHANNEL>_PROVIDERS` (messages.providers) is well formed, and each of its
    providers (or its single backend) sends within what an event's claim leaves (send_budget)."""
    from messages import providers
    from messages.channels import channel, channel_names, max_send_seconds, send_budget

    errors: list[CheckMessage] = []
    budget = send_budget()
    for name in channel_names():
        try:
            entries = providers.configured(name)
        except ValueError as error:
            errors.append(Error(str(error), id="transactional.E001"))
            continue
        backends: list[tuple[str, Any]] = []
        for entry in entries:  # each backend built with its options: a wrong one named here
            try:
                backends.append(
                    (
                        f"{name.upper()}_PROVIDERS: '{entry.get('name')}'",
                        providers.build(channel(name), entry),
                    )
                )
            except ImproperlyConfigured as error:
                errors.append(Error(str(error), id="transactional.E001"))
        if not entries:
            try:
                backends.append((channel(name).backend_setting or name, channel(name).single_backend()))
            except Exception:  # noqa: BLE001 - a backend that cannot be built fails at its send
                pass
        for where, backend in backends:
            longest = max_send_seconds(backend)
            if longest > budget:
                errors.append(
                    Warning(
                        f"{where}: one send may take up to {longest:.0f} s (from its timeouts), more "
                        f"than the {budget:.0f} s an event's claim leaves for it "
                        f"(EVENT_LEASE_SECONDS={settings.EVENT_LEASE_SECONDS} less the render and a "
                        "margin): such a send could outlive the claim and be sent twice.",
                        hint="Lower the provider's timeout, or raise EVENT_LEASE_SECONDS.",
                        id="transactional.W010",
                    )
                )
    return errors
