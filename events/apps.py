"""Event configurations, the generated API, events and their processing."""

from django.apps import AppConfig

from campaign.metrics import register_database_collector


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Event types and events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from events import publication, rollups, typology
        from events.metrics import collect_event_gauges

        register_database_collector(collect_event_gauges)
        publication.hand_in()  # the message editor's workflows and the event's rules
        rollups.hand_in()  # opt-outs through a message's link, counted in the reports
        typology.hand_in()  # rule changes reach every worker; a new organization's default typology
