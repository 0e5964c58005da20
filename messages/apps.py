"""Transactional messages. The label is "transactional" because django.contrib.messages owns "messages"."""

from django.apps import AppConfig


class TransactionalConfig(AppConfig):
    name = "messages"
    label = "transactional"
    verbose_name = "Messages and deliveries"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.checks import register

        from messages.checks import providers_settings

        register(providers_settings)
        from anymail.signals import tracking

        from messages import provider_events

        tracking.connect(provider_events.on_tracking, dispatch_uid="messages.provider_events")
