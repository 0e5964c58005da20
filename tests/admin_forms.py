"""Read an admin page's change form the way a browser submits it, so tests post back exactly the
fields (and inline management forms) that the page shows, with their current values."""

from __future__ import annotations

from html.parser import HTMLParser


class _ChangeFormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.data: dict[str, str | list[str]] = {}
        self._in_form = False
        self._textarea: str | None = None
        self._select: str | None = None
        self._select_multiple = False
        self._option: str | None = None

    def _put(self, name: str, value: str, *, many: bool = False) -> None:
        if "__prefix__" in name:  # the empty template form of an inline, never submitted
            return
        if many:
            values = self.data.setdefault(name, [])
            assert isinstance(values, list)
            values.append(value)
        else:
            self.data[name] = value

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form":
            form_id = attr.get("id", "")
            self._in_form = form_id.endswith("_form") and form_id != "logout-form"
            return
        if not self._in_form:
            return
        if tag == "option":
            if self._select is not None and "selected" in attr:
                self._put(self._select, attr.get("value", ""), many=self._select_multiple)
            return
        if "name" not in attr:
            return
        name = attr["name"]
        if tag == "input":
            kind = attr.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in attr:
                    self._put(name, attr.get("value") or "on", many=kind == "checkbox")
                return
            self._put(name, attr.get("value", ""))
        elif tag == "textarea" and "__prefix__" not in name:
            self._textarea = name
            self._put(name, "")
        elif tag == "select" and "__prefix__" not in name:
            self._select, self._select_multiple = name, "multiple" in attr
            if self._select_multiple:
                self.data.setdefault(name, [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            current = self.data[self._textarea]
            assert isinstance(current, str)
            if not current and data.startswith("\n"):
                data = data[1:]  # browsers drop the newline that follows <textarea>
            self.data[self._textarea] = current + data


def change_form_data(response, **overrides) -> dict[str, str | list[str]]:
    """The fields of the admin form on `response`'s page, with `overrides` applied."""
    parser = _ChangeFormParser()
    parser.feed(response.content.decode())
    assert parser.data, "no admin change form on this page"
    data = {**parser.data, **overrides}
    return {name: value for name, value in data.items() if value is not None}
