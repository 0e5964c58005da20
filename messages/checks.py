"""System checks of the messages app: a wrong list of providers stops every process at start."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error


def providers_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Each channel's `<CHANNEL>_PROVIDERS` (messages.providers) is well formed."""
    from messages import providers
    from messages.channels import channel_names

    errors = []
    for name in channel_names():
        try:
            providers.configured(name)
        except ValueError as error:
            errors.append(Error(str(error), id="transactional.E001"))
    return errors
