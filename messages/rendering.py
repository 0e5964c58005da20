"""Message templates: Jinja2 in an immutable sandbox over plain data, compiled once and cached, and
rendered within bounds.

Marketers write templates; event data only ever enters as a value of the context (`ctx`,
`profile`, `event`, `unsubscribe_url`), never as template source. The sandbox blocks private and
internal attributes, and the context holds only dicts, lists, strings and numbers, so there is no
path from a template to settings, files or Python internals.

A template is code a marketer writes and the server runs, in the web process (save, preview, proof)
and in the workers (every event). So nothing is computed when a template is compiled (no constant
folding), and every render has a deadline, a loop budget and an output cap (RENDER_* settings),
and no value it builds may outgrow the output cap: going beyond any bound raises
RenderLimitExceeded, which names the bound.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import inspect
import re
import string
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from jinja2 import Template, TemplateSyntaxError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

CONTEXT_NAMES = frozenset({"ctx", "profile", "event", "unsubscribe_url"})
# A message is a few kilobytes: a repetition or a power beyond these is an attack on the server.
MAX_REPEATED_LENGTH = 100_000
MAX_VARIANTS = 50  # languages of one message
MAX_EXPONENT = 1_000
# Integers a template computes stay below this many bits (about 3,000 digits): `(10**999)**999`
# or a chain of squarings would otherwise keep a worker busy in a single multiplication.
MAX_NUMBER_BITS = 10_000
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CHF": "CHF ", "CAD": "CA$", "AUD": "A$"}


class TemplateError(Exception):
    """A template that does not compile, uses a variable the event does not have, or goes beyond a
    bound of rendering."""

    def __init__(self, message: str, *, part: str = "", line: int | None = None) -> None:
        self.part = part
        self.line = line
        where = f"{part}" + (f", line {line}" if line else "")
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message


class RenderLimitExceeded(SecurityError):
    """A template went beyond a bound of rendering: its deadline, its loops, its output, or the size
    of a value it builds. The message names the bound (and its setting)."""


# --- The bounds of one render ------------------------------------------------------------------


@dataclass
class RenderBudget:
    """What one render of a message may still spend: its deadline and loop iterations are shared by
    the message's parts; the output is counted per part."""

    timeout: float
    deadline: float
    max_loops: int
    max_output: int
    loops: int = 0
    output: int = 0

    @classmethod
    def start(cls) -> RenderBudget:
        timeout = float(settings.RENDER_TIMEOUT_SECONDS)
        return cls(
            timeout=timeout,
            deadline=time.monotonic() + timeout,
            max_loops=int(settings.RENDER_MAX_LOOP_ITERATIONS),
            max_output=int(settings.RENDER_MAX_OUTPUT_CHARS),
        )

    # The checks themselves are inlined where they run (they run for every call and iteration).

    def refuse_time(self) -> None:
        raise RenderLimitExceeded(
            f"the template exceeded the render deadline of {self.timeout:g} s (RENDER_TIMEOUT_SECONDS)"
        )

    def refuse_loops(self) -> None:
        raise RenderLimitExceeded(
            f"the template's loops exceeded {self.max_loops:,} iterations (RENDER_MAX_LOOP_ITERATIONS)"
        )

    def refuse_output(self) -> None:
        raise RenderLimitExceeded(
            f"the template's output exceeded {self.max_output:,} characters (RENDER_MAX_OUTPUT_CHARS)"
        )


_BUDGET: ContextVar[RenderBudget | None] = ContextVar("render_budget", default=None)


@contextlib.contextmanager
def render_budget() -> Iterator[RenderBudget]:
    """The budget of the render in progress, or a new one for a render that starts here."""
    active = _BUDGET.get()
    if active is not None:
        yield active
        return
    budget = RenderBudget.start()
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def _check_time() -> None:
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        budget.refuse_time()


def _max_length() -> int:
    budget = _BUDGET.get()
    return budget.max_output if budget is not None else int(settings.RENDER_MAX_OUTPUT_CHARS)


def _refuse_length(length: int) -> None:
    """A value (string, list) no longer than a part's output may be: anything longer cannot be sent,
    only cost memory."""
    limit = _max_length()
    if length > limit:
        raise RenderLimitExceeded(
            f"the template built a value of {length:,} characters or items, beyond the limit of "
            f"{limit:,} (RENDER_MAX_OUTPUT_CHARS)"
        )


def _footprint(value: Any, limit: int) -> int:
    """How much printing `value` writes, in items and characters, counted down nested lists,
    tuples, dicts and sets as printing would (a list repeated by reference counts each time), and
    stopped as soon as it passes `limit`: `[[0] * 100000] * 3000` is 3,000 references to one list,
    cheap to build and 900 MB to print."""
    known: dict[int, int] = {}

    def weigh(item: Any) -> int:
        if isinstance(item, str | bytes):
            return len(item)
        if not isinstance(item, list | tuple | dict | set | frozenset):
            return 1
        if id(item) in known:
            return known[id(item)]
        known[id(item)] = limit + 1  # a container that holds itself is beyond any limit
        total = len(item)
        for child in item.items() if isinstance(item, dict) else item:
            total += weigh(child)
            if total > limit:
                break
        known[id(item)] = total
        return total

    return weigh(value)


def _refuse_long(value: Any) -> Any:
    if isinstance(value, str | bytes):
        budget = _BUDGET.get()
        if budget is None or len(value) > budget.max_output:
            _refuse_length(len(value))
    elif isinstance(value, list | tuple | dict | set | frozenset):
        limit = _max_length()
        _refuse_length(_footprint(value, limit))
    return value


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else 0


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
            raise RenderLimitExceeded(f"{value} is too large for a message")


_PRINTF_WIDTH = re.compile(r"%[-+ #0]*(\d+|\*)?(?:\.(\d+|\*))?")
_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?[a-zA-Z]")


def _refuse_huge_printf(template: Any) -> None:
    if isinstance(template, str):
        for match in _PRINTF_WIDTH.finditer(template):
            for size in match.groups():
                if size == "*" or (size and int(size) > MAX_REPEATED_LENGTH):
                    raise RenderLimitExceeded("a width or precision is too large for a message")


def _refuse_huge_format(template: str) -> None:
    try:
        specs = [spec for _, _, spec, _ in string.Formatter().parse(template) if spec]
    except ValueError:
        return  # str.format will report the malformed string itself
    for spec in specs:
        if "{" in spec or any(int(n) > MAX_REPEATED_LENGTH for n in re.findall(r"\d+", spec)):
            raise RenderLimitExceeded("a width or precision is too large for a message")


def _longest(values: Iterable[Any]) -> int:
    return max((len(str(value)) for value in values), default=0)


# Operations whose result can be many times larger than their inputs are checked *before* they run:
# each computes an upper bound of the length it would build.


def _printf_length(template: Any, values: Any) -> int:
    """`'%s%s' % (a, b)`, `'%(a)s%(a)s' % {...}`: every field may repeat the longest value."""
    if not isinstance(template, str):
        return 0
    if isinstance(values, dict):
        candidates: Iterable[Any] = values.values()
    elif isinstance(values, tuple):
        candidates = values
    else:
        candidates = (values,)
    return len(template) + len(_PRINTF_FIELD.findall(template)) * _longest(candidates)


def _format_length(template: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """`'{0}{0}{0}'.format(a)`: every replacement field may repeat the longest argument."""
    try:
        fields = sum(1 for _, name, _, _ in string.Formatter().parse(template) if name is not None)
    except ValueError:
        return 0
    return len(template) + fields * _longest([*args, *kwargs.values()])


def _replace_length(text: Any, old: Any, new: Any, count: Any = None) -> int:
    if not (isinstance(text, bytes) and isinstance(old, bytes) and isinstance(new, bytes)):
        text, old, new = str(text), str(old), str(new)
    if len(new) <= len(old):
        return len(text)
    occurrences = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * (len(new) - len(old))


def _join_length(separator: Any, items: list[Any]) -> int:
    gap = len(separator) if isinstance(separator, str | bytes) else len(str(separator))
    return sum(_length(item) for item in items) + max(0, len(items) - 1) * gap


def _lines(text: Any) -> int:
    return str(text).count("\n") + 1


def _refuse_costly_sum(items: list[Any], start: Any) -> None:
    """`sum` over lists copies the growing result at every step: its cost is items x length."""
    sequences = [item for item in (start, *items) if isinstance(item, list | tuple | str)]
    if sequences:
        total = sum(len(item) for item in sequences)
        _refuse_length(total)
        if total * len(items) > 100 * _max_length():
            raise RenderLimitExceeded(
                f"summing {len(items):,} sequences of {total:,} items in all is too costly for a message"
            )


@dataclass(frozen=True)
class _Arguments:
    """A filter's arguments by name (only bound for the filters that need a check)."""

    values: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values.get(name)


def _check_filter(name: str, arguments: dict[str, Any]) -> None:
    """The checks of the filters that can build much more than they are given."""
    a = _Arguments(arguments)
    if name == "replace":
        _refuse_length(_replace_length(a["s"], a["old"], a["new"], a["count"]))
    elif name == "indent":
        width = a["width"] if a["width"] is not None else 4
        per_line = len(str(width)) if isinstance(width, str) else width if isinstance(width, int) else 0
        _refuse_length(len(str(a["s"])) + _lines(a["s"]) * max(0, per_line))
    elif name == "wordwrap":
        text, width = str(a["s"]), a["width"] if isinstance(a["width"], int) else 79
        wrapped_lines = len(text) // max(1, width) + _lines(text)
        _refuse_length(len(text) + wrapped_lines * len(str(a["wrapstring"] or "\n")))
    elif name == "join" and a["attribute"] is None:
        _refuse_length(_join_length(a["d"] or "", a["value"]))
    elif name == "join":
        _refuse_length(max(0, len(a["value"]) - 1) * len(str(a["d"] or "")))
    elif name == "urlize":
        text = str(a["value"])
        links = sum(1 for word in text.split() if "." in word or "@" in word or ":" in word)
        extra = sum(len(str(a[key] or "")) for key in ("target", "rel", "extra_schemes")) + 60
        _refuse_length(2 * len(text) + links * extra)
    elif name == "format":
        args, kwargs = a["args"] or (), a["kwargs"] or {}
        _refuse_length(_printf_length(a["value"], kwargs if kwargs else tuple(args)))
    elif name == "sum":
        _refuse_costly_sum(a["iterable"], a["start"])


CHECKED_FILTERS = frozenset({"replace", "indent", "wordwrap", "join", "urlize", "format", "sum"})
# Filters that consume an iterable whose items the check must see: it is read once, into a list.
MATERIALIZED = {"join": "value", "sum": "iterable"}


def _guarded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    skip = 2 if hasattr(function, "jinja_pass_arg") else 1  # (context,) value
    signature = inspect.signature(function) if name in CHECKED_FILTERS else None

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_time()
        if name in SIZED_FILTERS:
            _refuse_huge(*args[skip:], *kwargs.values())
        elif name == "format" and len(args) >= skip:
            _refuse_huge_printf(args[skip - 1])
        if signature is not None:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return function(*args, **kwargs)  # the filter reports its own wrong arguments
            parameter = MATERIALIZED.get(name)
            if parameter in bound.arguments:
                bound.arguments[parameter] = list(bound.arguments[parameter])
            _check_filter(name, dict(bound.arguments))
            args, kwargs = bound.args, bound.kwargs
        return _refuse_long(function(*args, **kwargs))

    return guarded


def _check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The checks of the str (and bytes) methods that can build much more than they are given;
    returns the arguments to call with (an iterable to join is read once, into a list)."""
    name, text = method.__name__, method.__self__
    if name in SIZED_METHODS:
        _refuse_huge(*args, *kwargs.values())
        if name == "expandtabs":
            size = (args or (kwargs.get("tabsize", 8),))[0]
            tabs = text.count("\t" if isinstance(text, str) else b"\t")
            _refuse_length(len(text) + tabs * (size if isinstance(size, int) else 8))
    elif name == "replace" and len(args) >= 2:
        _refuse_length(_replace_length(text, args[0], args[1], args[2] if len(args) > 2 else -1))
    elif name == "join" and args:
        items = list(args[0])
        _refuse_length(_join_length(text, items))
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], dict):
        _refuse_length(len(text) * max(1, _longest(v for v in args[0].values() if v is not None)))
    return args


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with every loop, `~` and output of a template passing through the
    environment's bounds: iterations are counted, concatenations checked before they are built,
    and every piece of text written (to the output, or captured by `{% set %}...{% endset %}`)
    counted against the output cap."""

    # Nothing is computed at compile time. `optimized=False` turns Jinja's optimizer off, but the
    # code generator folds on its own too: what `{{ }}` prints, and the value of `{% autoescape %}`.

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        if not isinstance(node, nodes.TemplateData):  # literal text only
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)

    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier, frame: Frame) -> None:
        for keyword in node.options:
            self.writeline(f"context.eval_ctx.{keyword.key} = ")
            self.visit(keyword.value, frame)
            if isinstance(keyword.value, nodes.Const):
                setattr(frame.eval_ctx, keyword.key, keyword.value.value)
            else:  # known at render time only
                frame.eval_ctx.volatile = True

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        bounded = copy.copy(node)  # the parsed tree stays as it is (validation reads it)
        bounded.iter = nodes.Call(
            nodes.EnvironmentAttribute("bounded_iteration"), [node.iter], [], None, None, lineno=node.lineno
        )
        super().visit_For(bounded, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.bounded_value({join}(environment.bounded_parts((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))))")

    # Text a template yields is counted as it reaches BoundedTemplate.render; text written into a
    # buffer (`{% set %}...{% endset %}`, `{% filter %}`, a recursive loop) is counted here.
    _buffered = False

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        self._buffered = frame.buffer is not None
        super().visit_Output(node, frame)

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        text = super()._output_const_repr(group)
        return f"environment.counted_output({text})" if self._buffered else text

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if self._buffered:
            self.write("environment.counted_output(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        if self._buffered:
            self.write(")")


class BoundedTemplate(Template):
    """A template whose render runs within a budget (render_budget): the message's, when the
    render is one part of a message, else its own."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        with render_budget() as budget:
            outer_output, budget.output = budget.output, 0  # the output cap is per part
            context = self.new_context(dict(*args, **kwargs))
            try:
                return self.environment.concat(self._counted(self.root_render_func(context), budget))  # type: ignore[attr-defined]
            except Exception:
                self.environment.handle_exception()
            finally:
                budget.output = outer_output

    @staticmethod
    def _counted(chunks: Iterator[str], budget: RenderBudget) -> Iterator[str]:
        for chunk in chunks:
            budget.output += len(chunk)
            if budget.output > budget.max_output:
                budget.refuse_output()
            yield chunk

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        yield self.render(*args, **kwargs)  # a stream is bounded as a render is


class MessageSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus rules for plain data and the bounds of a message.

    * `ctx.values` means the event's field `values`, never the dict method (Jinja prefers
      attributes, so a field or collection named `items`, `keys`, `values`, `get` or `copy` would
      render a method, or fail to loop when the optional field is absent): on a dict, `.name` is
      only ever a key, and a missing key is undefined like any other missing field.
    * Nothing is computed at compile time (`optimized=False`: Jinja would otherwise fold constant
      expressions such as a chain of `replace` filters while a template is merely *saved*).
    * At render time, every call, operator, filter and loop iteration checks the render's
      deadline; loops count their iterations; `*`, `**`, `%`, `+`, `~`, and the filters
      and methods that multiply what they are given (`replace`, `join`, `indent`, `format`...)
      are refused before they build a value longer than a part's output may be.
    """

    code_generator_class = BoundedCodeGenerator
    template_class = BoundedTemplate
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        numbers = isinstance(left, int) and isinstance(right, int)
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise RenderLimitExceeded(f"the exponent {right} is too large for a message")
            if numbers and right > 0 and left.bit_length() * right > MAX_NUMBER_BITS:
                raise RenderLimitExceeded("the power is too large for a message")
        elif operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(count, int):
                    if len(sequence) * count > MAX_REPEATED_LENGTH:
                        raise RenderLimitExceeded("the repetition is too long for a message")
                    if count > 0 and _footprint(sequence, _max_length()) * count > _max_length():
                        _refuse_length(_footprint(sequence, _max_length()) * count)
            if numbers and left.bit_length() + right.bit_length() > MAX_NUMBER_BITS:
                raise RenderLimitExceeded("the product is too large for a message")
        elif operator == "%":
            _refuse_huge_printf(left)
            _refuse_length(_printf_length(left, right))
        elif (
            operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
        ):
            _refuse_length(len(left) + len(right))
        return _refuse_long(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` of a recursive loop
            args = (__self.bounded_iteration(args[0]), *args[1:])
        elif isinstance(getattr(__obj, "__self__", None), str | bytes) and hasattr(__obj, "__name__"):
            args = _check_method(__obj, args, kwargs)
        return _refuse_long(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__

        def guarded(*args: Any, **kwargs: Any) -> str:
            _refuse_huge_format(template)
            values = args[0] if value.__name__ == "format_map" and args else None
            if isinstance(values, dict):
                _refuse_length(_format_length(template, (), values))
            else:
                _refuse_length(_format_length(template, args, kwargs))
            return _refuse_long(wrapped(*args, **kwargs))

        return guarded

    # Called by the code BoundedCodeGenerator writes.

    def bounded_iteration(self, iterable: Any) -> Iterator[Any]:
        """A loop's items, each counted against the render's loop budget."""
        budget = _BUDGET.get()
        if budget is None:
            yield from iterable
            return
        for item in iterable:
            budget.loops += 1
            if budget.loops > budget.max_loops:
                budget.refuse_loops()
            if time.monotonic() > budget.deadline:
                budget.refuse_time()
            yield item

    def bounded_parts(self, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        """The operands of a `~`, checked before they are joined."""
        _check_time()
        _refuse_length(sum(len(part) if isinstance(part, str) else 0 for part in parts))
        return parts

    def bounded_value(self, value: Any) -> Any:
        return _refuse_long(value)

    def counted_output(self, text: str) -> str:
        """Text written, to the output or a `{% set %}` block (the hottest call: kept to the sum).
        Writing takes no time of its own: the loops and calls around it check the deadline."""
        budget = _BUDGET.get()
        if budget is not None:
            budget.output += len(text)
            if budget.output > budget.max_output:
                budget.refuse_output()
        return text


_MISSING: ContextVar[list[str] | None] = ContextVar("render_missing", default=None)
MAX_MISSING_RECORDED = 20


class RecordingUndefined(Undefined):
    """Jinja's own Undefined (a missing field prints as nothing, loops over nothing), which, within
    `recording_missing()`, notes each missing field the render *prints*. Testing it (`{% if
    ctx.coupon %}`, `| default(...)`) or looping over it (an absent collection: no items) is not
    printing it."""

    __slots__ = ()

    def __str__(self) -> str:
        seen = _MISSING.get()
        if seen is not None and len(seen) < MAX_MISSING_RECORDED:
            name = self._undefined_name or "?"
            if name not in seen:
                seen.append(name)
        return ""


@contextlib.contextmanager
def recording_missing() -> Iterator[list[str]]:
    """The names of the missing fields the renders within it used (a draft tried on real events)."""
    seen: list[str] = []
    token = _MISSING.set(seen)
    try:
        yield seen
    finally:
        _MISSING.reset(token)


def _make_environment(*, autoescape: bool) -> ImmutableSandboxedEnvironment:
    environment = MessageSandbox(
        autoescape=autoescape, keep_trailing_newline=True, optimized=False, undefined=RecordingUndefined
    )
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
        """The schema's enrichments add theirs: a joined row's name in its collection's items, and
        `profile` for an event-based message joined to a profile."""
        joins = schema.get("enrichments") or []
        joined: dict[str, set[str]] = {}
        for join in joins:
            if join.get("kind") == "resource":
                joined.setdefault(join.get("collection", ""), set()).add(join.get("name", ""))
        return cls(
            fields=frozenset(f["name"] for f in schema.get("fields", [])),
            collections={
                c["name"]: frozenset(f["name"] for f in c.get("fields", [])) | joined.get(c["name"], set())
                for c in schema.get("collections", [])
            },
            profile_allowed=schema.get("targeting") == "profile"
            or any(join.get("kind") == "profile" for join in joins),
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
    if len(variants) > MAX_VARIANTS:
        raise TemplateError(f"at most {MAX_VARIANTS} language variants", part="variants")
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


def _variant_language(content: dict[str, Any], language: str | None) -> str | None:
    """The variant a language chooses (`pt-BR` also finds `pt`), if any."""
    variants = content.get("variants") or {}
    if language:
        for candidate in (language, language.split("-")[0].split("_")[0]):
            if candidate in variants:
                return candidate
    return None


def chosen_variant(content: dict[str, Any], language: str | None) -> str | None:
    """The language of the variant an event of this language is sent (`pt-BR` also finds `pt`), or
    None for the default content: what a preview says it shows."""
    return _variant_language(content, language)


def choose_variant(content: dict[str, Any], language: str | None) -> dict[str, Any]:
    """The content for a language: the variant's parts over the default ones."""
    chosen = _variant_language(content, language)
    return {**content, **content["variants"][chosen]} if chosen else content


def _render_parts(
    content: dict[str, Any], *, keys: tuple[str, ...], context: dict[str, Any], language: str | None
) -> Iterator[tuple[str, Callable[[], str]]]:
    """Each part of the content for a language, with the call that renders it (within the render's
    budget). A part that goes beyond a bound raises TemplateError naming the part and the bound."""
    chosen_language = _variant_language(content, language)
    variant = content["variants"][chosen_language] if chosen_language else {}
    chosen = {**content, **variant}
    for key in keys:
        source = str(chosen.get(key) or "")
        label = f"variants.{chosen_language}.{key}" if key in variant else key

        def render(source: str = source, key: str = key, label: str = label) -> str:
            if not source:
                return ""
            try:
                return compile_template(source, part="html" if key == "html" else key).render(context)
            except RenderLimitExceeded as error:
                raise TemplateError(str(error), part=label) from None
            except MemoryError:  # what no bound foresaw: still a bound, not a crash
                raise TemplateError(
                    "the template needs more memory than a message may use", part=label
                ) from None
            except RecursionError:
                raise TemplateError("the template nests deeper than a message may", part=label) from None

        yield key, render


_RENDER_PART_CODE = next(
    const for const in _render_parts.__code__.co_consts if inspect.iscode(const) and const.co_name == "render"
)


def failing_template(error: BaseException) -> tuple[str, int | None]:
    """Where a render raised `error`: the part (`html`, `variants.fr.subject`; "" if unknown) and
    the line of its template (None if unknown), read from the traceback."""
    part, line = "", None
    for frame, number in traceback.walk_tb(error.__traceback__):
        if frame.f_code is _RENDER_PART_CODE:
            part = str(frame.f_locals.get("label") or "")
        elif frame.f_code.co_filename == "<template>":
            line = number
    return part, line


def render_content(
    content: dict[str, Any], *, keys: tuple[str, ...], context: dict[str, Any], language: str | None = None
) -> dict[str, str]:
    """Render each part of a message with the plain-data context, within one render budget."""
    with render_budget():
        return {
            key: render()
            for key, render in _render_parts(content, keys=keys, context=context, language=language)
        }


def check_render_bounds(content: dict[str, Any], *, keys: tuple[str, ...], context: dict[str, Any]) -> None:
    """Render every part, in every language, with sample data, as the events will be: a template
    that goes beyond a bound of rendering raises TemplateError naming its part, when it is saved
    rather than at every event. Other errors are left to the preview: sample data is not an
    event's data, and a template may well work with the real one."""
    # Each language is rendered as an event would be (its own loops), but all of them within one
    # deadline: a draft of many languages costs the web process one deadline, not one each.
    deadline = RenderBudget.start().deadline
    for language in (None, *sorted(content.get("variants") or {})):
        budget = RenderBudget.start()
        budget.deadline = deadline
        token = _BUDGET.set(budget)
        try:
            for _, render in _render_parts(content, keys=keys, context=context, language=language):
                try:
                    render()
                except TemplateError:
                    raise
                except Exception:  # see the docstring
                    continue
        finally:
            _BUDGET.reset(token)
