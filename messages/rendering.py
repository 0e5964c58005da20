"""Message templates: Jinja2 in an immutable sandbox over plain data, compiled once and cached.

Marketers write templates; event data only ever enters as a value of the context (`ctx`,
`profile`, `event`, `unsubscribe_url`), never as template source. The sandbox blocks private and
internal attributes, and the context holds only dicts, lists, strings and numbers, so there is no
path from a template to settings, files or Python internals.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

CONTEXT_NAMES = frozenset({"ctx", "profile", "event", "unsubscribe_url"})
# A message is a few kilobytes: a repetition or a power beyond these is an attack on the server.
MAX_REPEATED_LENGTH = 100_000
MAX_EXPONENT = 1_000
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CHF": "CHF ", "CAD": "CA$", "AUD": "A$"}


class TemplateError(Exception):
    """A template that does not compile or uses a variable the event does not have."""

    def __init__(self, message: str, *, part: str = "", line: int | None = None) -> None:
        self.part = part
        self.line = line
        where = f"{part}" + (f", line {line}" if line else "")
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message


def _parse_datetime(value: Any) -> dt.date | dt.datetime | None:
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip().replace(" ", "T", 1).replace("Z", "+00:00")
    for parse in (dt.datetime.fromisoformat, dt.date.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    return None


def filter_date(value: Any, format: str = "%Y-%m-%d") -> str:
    """`{{ ctx.orderDate | date("%d/%m/%Y") }}`: ISO dates and datetimes, formatted."""
    parsed = _parse_datetime(value)
    return parsed.strftime(format) if parsed else ("" if value is None else str(value))


def filter_number(value: Any, decimals: int = 0, thousands: str = ",", point: str = ".") -> str:
    """`{{ ctx.points | number }}` -> `12,500`; `number(2)` -> `12,500.00`."""
    try:
        number = Decimal(str(value).replace(",", "").strip())
    except (InvalidOperation, ValueError):
        return "" if value is None else str(value)
    decimals = max(0, min(int(decimals), 10))
    formatted = f"{number:,.{decimals}f}"
    return formatted.replace(",", "\0").replace(".", point).replace("\0", thousands)


def filter_currency(value: Any, code: str = "USD", decimals: int = 2) -> str:
    """`{{ p.price | currency("EUR") }}` -> `€12.50`."""
    amount = filter_number(value, decimals)
    symbol = CURRENCY_SYMBOLS.get(str(code).upper(), f"{code} ")
    return f"-{symbol}{amount[1:]}" if amount.startswith("-") else f"{symbol}{amount}"


# Filters and str methods whose integer arguments are sizes of what they build (widths, counts).
# Other arguments (`default(150000)`, `'{:,}'.format(ctx.total)`) are data and are left alone.
SIZED_FILTERS = frozenset({"center", "indent", "batch", "slice"})
SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _refuse_huge(*values: Any) -> None:
    """Sizes (widths, counts) beyond a message's are refused."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_REPEATED_LENGTH:
            raise SecurityError(f"{value} is too large for a message")


_PRINTF_WIDTH = re.compile(r"%[-+ #0]*(\d+|\*)?(?:\.(\d+|\*))?")


def _refuse_huge_printf(template: Any) -> None:
    if isinstance(template, str):
        for match in _PRINTF_WIDTH.finditer(template):
            for size in match.groups():
                if size == "*" or (size and int(size) > MAX_REPEATED_LENGTH):
                    raise SecurityError("a width or precision is too large for a message")


def _refuse_huge_format(template: str) -> None:
    try:
        specs = [spec for _, _, spec, _ in string.Formatter().parse(template) if spec]
    except ValueError:
        return  # str.format will report the malformed string itself
    for spec in specs:
        if "{" in spec or any(int(n) > MAX_REPEATED_LENGTH for n in re.findall(r"\d+", spec)):
            raise SecurityError("a width or precision is too large for a message")


def _guarded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    # Filters run at compile time too (constant folding): the guard protects both.
    skip = 2 if hasattr(function, "jinja_pass_arg") else 1  # (context,) value

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if name in SIZED_FILTERS:
            _refuse_huge(*args[skip:], *kwargs.values())
        elif name == "format" and len(args) >= skip:
            _refuse_huge_printf(args[skip - 1])
        return function(*args, **kwargs)

    return guarded


class MessageSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus rules for plain data and a message's size.

    * `ctx.values` means the event's field `values`, never the dict method (Jinja prefers
      attributes, so a field or collection named `items`, `keys`, `values`, `get` or `copy` would
      render a method, or fail to loop when the optional field is absent): on a dict, `.name` is
      only ever a key, and a missing key is undefined like any other missing field.
    * Jinja folds constant expressions when it compiles, so `{{ 'a' * 10**9 }}`, `{{ 9**9**9 }}` or
      `{{ 'x'|center(10**9) }}` would exhaust the server when a template is merely *saved*: `*`,
      `**` and `%` are intercepted (computed at render time only) and, like method and filter
      arguments, refused beyond a message's size.
    """

    intercepted_binops = frozenset({"*", "**", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"the exponent {right} is too large for a message")
        elif operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(count, int):
                    if len(sequence) * count > MAX_REPEATED_LENGTH:
                        raise SecurityError("the repetition is too long for a message")
        elif operator == "%":
            _refuse_huge_printf(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(__obj, "__name__", None) in SIZED_METHODS and isinstance(
            getattr(__obj, "__self__", None), str
        ):
            _refuse_huge(*args, *kwargs.values())
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__

        def guarded(*args: Any, **kwargs: Any) -> str:
            _refuse_huge_format(template)
            return wrapped(*args, **kwargs)

        return guarded


def _make_environment(*, autoescape: bool) -> ImmutableSandboxedEnvironment:
    environment = MessageSandbox(autoescape=autoescape, keep_trailing_newline=True)
    environment.filters.update({"date": filter_date, "number": filter_number, "currency": filter_currency})
    environment.filters = {name: _guarded_filter(name, f) for name, f in environment.filters.items()}
    environment.globals.clear()  # no range(), dict(), lipsum(), cycler(): plain data only
    return environment


HTML_ENVIRONMENT = _make_environment(autoescape=True)
TEXT_ENVIRONMENT = _make_environment(autoescape=False)
HTML_PARTS = frozenset({"html"})


def _environment_for(part: str) -> ImmutableSandboxedEnvironment:
    return HTML_ENVIRONMENT if part in HTML_PARTS else TEXT_ENVIRONMENT


@functools.lru_cache(maxsize=4096)
def compile_template(source: str, *, part: str):
    """Compile once per distinct source; published versions never change, so this caches them."""
    try:
        return _environment_for(part).from_string(source)
    except TemplateSyntaxError as error:
        raise TemplateError(error.message or "syntax error", part=part, line=error.lineno) from None


@dataclass(frozen=True)
class Vocabulary:
    """What a template may name: the configuration's ctx fields and collections, and the profile."""

    fields: frozenset[str]
    collections: dict[str, frozenset[str]]
    profile_allowed: bool

    @classmethod
    def from_schema(cls, schema: dict[str, Any]) -> Vocabulary:
        return cls(
            fields=frozenset(f["name"] for f in schema.get("fields", [])),
            collections={
                c["name"]: frozenset(f["name"] for f in c.get("fields", []))
                for c in schema.get("collections", [])
            },
            profile_allowed=schema.get("targeting") == "profile",
        )


def _ctx_attribute(node: nodes.Node) -> str | None:
    """`ctx.name` or `ctx["name"]` -> "name"."""
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "ctx":
        return node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "ctx"
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.arg.value
    return None


def _item_attribute(node: nodes.Node) -> tuple[str, str] | None:
    """`p.sku` or `p["sku"]` -> ("p", "sku")."""
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        return node.node.name, node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.node.name, node.arg.value
    return None


def _private_name(node: nodes.Node) -> str | None:
    """The `_name` a node reaches for (`x.__class__`, `x["_y"]`, `x|attr("__dict__")`), if any."""
    name: str | None
    if isinstance(node, nodes.Getattr):
        name = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        name = node.arg.value
    elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        argument = node.args[0]
        name = str(argument.value) if isinstance(argument, nodes.Const) else None
    else:
        return None
    return name if isinstance(name, str) and name.startswith("_") else None


def _names(target: nodes.Node) -> list[nodes.Name]:
    """The names a loop or assignment target binds (`p`, or `k, v`)."""
    return [target] if isinstance(target, nodes.Name) else list(target.find_all(nodes.Name))


class _VariableChecker:
    def __init__(self, vocabulary: Vocabulary, part: str) -> None:
        self.vocabulary = vocabulary
        self.part = part

    def fail(self, message: str, node: nodes.Node) -> None:
        raise TemplateError(message, part=self.part, line=getattr(node, "lineno", None))

    def visit(self, node: nodes.Node, scope: dict[str, frozenset[str] | None]) -> None:
        if isinstance(node, nodes.For):
            self.visit(node.iter, scope)
            inner = dict(scope)
            collection = _ctx_attribute(node.iter)
            item_fields = self.vocabulary.collections.get(collection) if collection else None
            for target in _names(node.target):
                inner[target.name] = item_fields
            inner["loop"] = None
            for child in [*node.body, *(node.test and [node.test] or [])]:
                self.visit(child, inner)
            for child in node.else_:
                self.visit(child, scope)
            return
        if isinstance(node, nodes.Assign | nodes.AssignBlock):
            for target in _names(node.target):
                scope[target.name] = None
        if isinstance(node, nodes.Macro | nodes.CallBlock):
            self.fail("macros are not available in messages", node)
        name = _ctx_attribute(node)
        if name is not None:
            if name not in self.vocabulary.fields and name not in self.vocabulary.collections:
                self.fail(f"'ctx.{name}' is not a field of this event", node)
            return
        item = _item_attribute(node)
        if item is not None:
            variable, attribute = item
            item_fields = scope.get(variable)
            if item_fields is not None and attribute not in item_fields:
                self.fail(f"'{variable}.{attribute}' is not a field of this collection", node)
        if isinstance(node, nodes.Name) and node.ctx == "load":
            if node.name == "profile" and not self.vocabulary.profile_allowed:
                self.fail("'profile' is only available to profile-based messages", node)
            if node.name not in CONTEXT_NAMES and node.name not in scope:
                self.fail(f"unknown variable '{node.name}'", node)
        for child in node.iter_child_nodes():
            self.visit(child, scope)


def validate_template(source: str, *, part: str, vocabulary: Vocabulary | None = None) -> None:
    """Raise TemplateError for a syntax error (with its line) or a variable the event lacks."""
    environment = _environment_for(part)
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as error:
        raise TemplateError(error.message or "syntax error", part=part, line=error.lineno) from None
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        raise TemplateError(
            "extends, include and import are not available in messages", part=part, line=node.lineno
        )
    # The sandbox would refuse these at render time, failing every event: refuse them on save.
    for accessor in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        private = _private_name(accessor)
        if private is not None:
            raise TemplateError(
                f"'{private}': names starting with '_' are not available in messages",
                part=part,
                line=accessor.lineno,
            )
    if vocabulary is not None:
        _VariableChecker(vocabulary, part).visit(tree, {})
    compile_template(source, part=part)


def validate_content(
    content: dict[str, Any], *, vocabulary: Vocabulary | None, keys: tuple[str, ...]
) -> None:
    """Check every template of a message content, its language variants included."""
    for key in keys:
        validate_template(str(content.get(key) or ""), part=key, vocabulary=vocabulary)
    variants = content.get("variants") or {}
    if not isinstance(variants, dict):
        raise TemplateError('variants are an object by language: {"fr": {...}}', part="variants")
    for language, variant in variants.items():
        if not isinstance(variant, dict):
            raise TemplateError("a variant must be an object of content parts", part=f"variants.{language}")
        for key in sorted(set(variant) - set(keys)):
            raise TemplateError(
                f"not a part of this message (its parts: {', '.join(keys)})",
                part=f"variants.{language}.{key}",
            )
        for key in keys:
            if key in variant:
                validate_template(
                    str(variant[key] or ""), part=f"variants.{language}.{key}", vocabulary=vocabulary
                )


def choose_variant(content: dict[str, Any], language: str | None) -> dict[str, Any]:
    """The content for a language: the variant's parts over the default ones."""
    variants = content.get("variants") or {}
    if language:
        for candidate in (language, language.split("-")[0].split("_")[0]):
            if candidate in variants:
                return {**content, **variants[candidate]}
    return content


def render_content(
    content: dict[str, Any], *, keys: tuple[str, ...], context: dict[str, Any], language: str | None = None
) -> dict[str, str]:
    """Render each part of a message with the plain-data context."""
    chosen = choose_variant(content, language)
    rendered: dict[str, str] = {}
    for key in keys:
        source = str(chosen.get(key) or "")
        part = "html" if key == "html" else key
        rendered[key] = compile_template(source, part=part).render(context) if source else ""
    return rendered
