"""The event API answers JSON whatever the Accept header says: clients of the hosted API send all
sorts (`text/plain`, `application/xml`) and expect JSON, never a 406. Parsing is unchanged: a body
that is not JSON is still a 415."""

from rest_framework.negotiation import DefaultContentNegotiation


class AlwaysJSON(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type
