"""System checks of the messages app: a wrong list of providers stops every process at start."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured


def providers_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Each channel's `<CHANNEL>_PROVIDERS` (messages.providers) is well formed."""
    from messages import providers
    from messages.channels import channel, channel_names

    errors = []
    for name in channel_names():
        try:
            entries = providers.configured(name)
        except ValueError as error:
            errors.append(Error(str(error), id="transactional.E001"))
            continue
        for entry in entries:  # each backend built with its options: a wrong one named here
            try:
                providers.build(channel(name), entry)
            except ImproperlyConfigured as error:
                errors.append(Error(str(error), id="transactional.E001"))
    return errors
