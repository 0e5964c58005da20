"""No content negotiation for the event API: one renderer and one parser.

It answers JSON whatever the Accept header says: clients of the hosted API send all sorts
(`text/plain`, `application/xml`) and expect JSON, never a 406. Its one parser takes every body:
the view admits only the JSON media types (a body that is not JSON is still a 415) before it
reads one. Nothing is parsed from the Accept or Content-Type headers on the way."""

from rest_framework.negotiation import BaseContentNegotiation


class AlwaysJSON(BaseContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        (renderer,) = renderers
        return renderer, renderer.media_type

    def select_parser(self, request, parsers):
        (parser,) = parsers
        return parser
