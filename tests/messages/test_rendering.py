"""Message templates: personalisation, escaping, filters, language variants, errors, and the sandbox."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import pytest
from django.conf import settings
from jinja2.sandbox import SecurityError

from events.models import Event
from messages.rendering import (
    TEXT_ENVIRONMENT,
    TemplateError,
    Vocabulary,
    check_render_bounds,
    choose_variant,
    compile_template,
    render_content,
    validate_content,
    validate_template,
)
from messages.services import compose, template_context
from tests.factories import ProfileFactory

EMAIL = ("subject", "html", "text")

CART_SCHEMA: dict[str, Any] = {
    "channel": "email",
    "targeting": "event",
    "fields": [
        {"name": "firstName", "type": "text"},
        {"name": "orderDate", "type": "date"},
        {"name": "points", "type": "integer"},
        {"name": "nickname", "type": "text"},
    ],
    "collections": [
        {
            "name": "products",
            "fields": [{"name": "sku", "type": "text"}, {"name": "price", "type": "decimal"}],
        }
    ],
}
CART = Vocabulary.from_schema(CART_SCHEMA)
PROFILE_BASED = Vocabulary.from_schema({**CART_SCHEMA, "targeting": "profile"})


def render(source: str, part: str = "html", **ctx: Any) -> str:
    validate_template(source, part=part, vocabulary=CART)
    return render_content({part: source}, keys=(part,), context={"ctx": ctx})[part]


def refusal(source: str, *, part: str = "html", vocabulary: Vocabulary | None = CART) -> TemplateError:
    with pytest.raises(TemplateError) as refused:
        validate_template(source, part=part, vocabulary=vocabulary)
    return refused.value


# --- Personalisation ---------------------------------------------------------------------------


def test_html_is_autoescaped_and_text_parts_are_not():
    content = {
        "subject": "Hi {{ ctx.firstName }}",
        "html": "<p>Hi {{ ctx.firstName }}</p>",
        "text": "Hi {{ ctx.firstName }}",
    }
    validate_content(content, vocabulary=CART, keys=EMAIL)
    rendered = render_content(
        content, keys=EMAIL, context={"ctx": {"firstName": "<script>alert(1)</script>"}}
    )
    assert rendered["html"] == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert rendered["text"] == "Hi <script>alert(1)</script>"
    assert rendered["subject"] == "Hi <script>alert(1)</script>"


def test_a_loop_renders_every_item_of_a_collection():
    source = "{% for p in ctx.products %}{{ loop.index }}. {{ p.sku }} {{ p.price }}\n{% endfor %}"
    products = [{"sku": "JACKET", "price": 125}, {"sku": "GLOVES", "price": 20.5}]
    assert render(source, part="text", products=products) == "1. JACKET 125\n2. GLOVES 20.5\n"


def test_a_missing_optional_collection_renders_no_item():
    assert render("[{% for p in ctx.products %}{{ p.sku }}{% else %}none{% endfor %}]") == "[none]"


def test_a_missing_optional_field_renders_empty_or_its_default():
    assert render("Hi {{ ctx.nickname }}!", part="text") == "Hi !"
    assert render("Hi {{ ctx.nickname | default('friend') }}!", part="text") == "Hi friend!"


@pytest.mark.parametrize(
    ("source", "ctx", "expected"),
    [
        ('{{ ctx.orderDate | date("%d/%m/%Y") }}', {"orderDate": "2017-12-01"}, "01/12/2017"),
        ("{{ ctx.orderDate | date }}", {"orderDate": "2017-12-01 08:00:00.768Z"}, "2017-12-01"),
        ('{{ ctx.orderDate | date("%H:%M") }}', {"orderDate": "2017-12-01T08:30:00Z"}, "08:30"),
        ("{{ ctx.orderDate | date }}", {"orderDate": "not a date"}, "not a date"),
        ("{{ ctx.points | number }}", {"points": 12500}, "12,500"),
        ("{{ ctx.points | number(2) }}", {"points": 12500}, "12,500.00"),
        ('{{ ctx.points | number(1, ".", ",") }}', {"points": 1234.56}, "1.234,6"),
        ("{{ ctx.points | currency }}", {"points": 125}, "$125.00"),
        ('{{ ctx.points | currency("EUR") }}', {"points": "12.5"}, "€12.50"),
        ('{{ ctx.points | currency("GBP") }}', {"points": -3}, "-£3.00"),
        ('{{ ctx.points | currency("SEK") }}', {"points": 10}, "SEK 10.00"),
        ('{{ ctx.nickname | default("friend") }}', {}, "friend"),
        ("{{ ctx.firstName | upper }}", {"firstName": "jack"}, "JACK"),
    ],
)
def test_filters_format_dates_numbers_and_currencies(source, ctx, expected):
    assert render(source, part="text", **ctx) == expected


def test_fields_named_like_dict_methods_render_their_values():
    schema = {
        "targeting": "event",
        "fields": [{"name": "values", "type": "text"}, {"name": "keys", "type": "text"}],
        "collections": [{"name": "items", "fields": [{"name": "get", "type": "text"}]}],
    }
    source = "{{ ctx.values }}/{{ ctx.keys }}:{% for i in ctx.items %}{{ i.get }}{% endfor %}"
    validate_template(source, part="text", vocabulary=Vocabulary.from_schema(schema))
    ctx = {"values": "V", "keys": "K", "items": [{"get": "a"}, {"get": "b"}]}
    assert render_content({"text": source}, keys=("text",), context={"ctx": ctx})["text"] == "V/K:ab"


def test_absent_optional_fields_named_like_dict_methods_are_empty_not_methods():
    """An optional collection `items` left out of the event loops over nothing (it used to fail
    the delivery: the dict's own `.items` method is not iterable)."""
    source = "[{{ ctx.values }}]{% for i in ctx.items %}{{ i.sku }}{% endfor %}{{ ctx.get | default('-') }}"
    assert render_content({"text": source}, keys=("text",), context={"ctx": {}})["text"] == "[]-"


# --- Language variants -------------------------------------------------------------------------

VARIANTS = {
    "subject": "Your order",
    "html": "<p>Thanks</p>",
    "text": "Thanks",
    "variants": {"fr": {"subject": "Votre commande", "text": "Merci"}, "de": {"subject": "Ihre Bestellung"}},
}


@pytest.mark.parametrize(
    ("language", "subject", "text"),
    [
        ("fr", "Votre commande", "Merci"),
        ("fr-CA", "Votre commande", "Merci"),
        ("fr_BE", "Votre commande", "Merci"),
        ("de", "Ihre Bestellung", "Thanks"),  # a part the variant lacks falls back to the default
        ("es", "Your order", "Thanks"),
        ("", "Your order", "Thanks"),
        (None, "Your order", "Thanks"),
    ],
)
def test_the_variant_is_chosen_by_language_with_fallback_to_the_default(language, subject, text):
    rendered = render_content(VARIANTS, keys=EMAIL, context={"ctx": {}}, language=language)
    assert (rendered["subject"], rendered["text"], rendered["html"]) == (subject, text, "<p>Thanks</p>")


def test_choose_variant_leaves_the_content_untouched():
    chosen = choose_variant(VARIANTS, "fr")
    assert chosen["subject"] == "Votre commande" and VARIANTS["subject"] == "Your order"


@pytest.mark.django_db
def test_ac_language_of_the_event_selects_the_variant(cart_configuration):
    content = {
        **cart_configuration.message.live_version.content,
        "variants": {"fr": {"subject": "{{ ctx.firstName }}, votre panier vous attend"}},
    }
    event = Event(configuration=cart_configuration, email="jack@example.com")
    french = compose(
        version=None, event=event, content=content, ctx={"firstName": "Jacques", "AC_language": "fr"}
    )
    english = compose(version=None, event=event, content=content, ctx={"firstName": "Jack"})
    assert french.parts["subject"] == "Jacques, votre panier vous attend"
    assert english.parts["subject"] == "Jack, your cart is waiting"


@pytest.mark.django_db
def test_a_profiles_language_selects_the_variant_of_a_profile_based_message(cart_configuration, organization):
    profile = ProfileFactory(organization=organization, first_name="Zoé", language="fr")
    content = {
        "subject": "Hello {{ profile.firstName }}",
        "variants": {"fr": {"subject": "Bonjour {{ profile.firstName }}"}},
    }
    event = Event(configuration=cart_configuration, email="zoe@example.com")
    rendered = compose(version=None, event=event, content=content, ctx={}, profile=profile)
    assert rendered.parts["subject"] == "Bonjour Zoé"


# --- Errors an editor sees ---------------------------------------------------------------------


def test_a_syntax_error_is_reported_with_its_part_and_line():
    error = refusal("<p>Hello</p>\n<p>{{ ctx.firstName }</p>\n", part="html")
    assert error.part == "html" and error.line == 2
    assert str(error).startswith("html, line 2: ")


def test_an_unclosed_block_is_reported():
    error = refusal("{% for p in ctx.products %}\n{{ p.sku }}\n", part="text")
    assert error.part == "text" and "endfor" in error.message


@pytest.mark.parametrize(
    ("source", "named", "line"),
    [
        ("Hi {{ ctx.x }}", "'ctx.x' is not a field of this event", 1),
        ("Hi\n{{ ctx['couponCode'] }}", "'ctx.couponCode' is not a field of this event", 2),
        (
            "{% for p in ctx.products %}\n\n{{ p.x }}{% endfor %}",
            "'p.x' is not a field of this collection",
            3,
        ),
        ("{% for p in ctx.products %}{{ p['colour'] }}{% endfor %}", "'p.colour' is not a field", 1),
        ("{{ profile.firstName }}", "'profile' is only available to profile-based messages", 1),
        ("{{ customer.name }}", "unknown variable 'customer'", 1),
        ("{% if ctx.points > limit %}x{% endif %}", "unknown variable 'limit'", 1),
        ("{% macro m() %}x{% endmacro %}", "macros are not available", 1),
    ],
)
def test_an_unknown_variable_is_reported_by_name(source, named, line):
    error = refusal(source)
    assert named in error.message and error.line == line


def test_profile_fields_loop_variables_and_assignments_are_known():
    source = (
        "{{ profile.firstName }} {{ unsubscribe_url }} {{ event.PKey }}"
        "{% set total = ctx.points %}{{ total }}"
        "{% for p in ctx.products %}{{ loop.index }}{{ p.sku }}{% endfor %}"
    )
    validate_template(source, part="html", vocabulary=PROFILE_BASED)


def test_a_bad_variant_is_reported_with_its_language():
    content = {"subject": "Hi", "variants": {"fr": {"subject": "Salut {{ ctx.prenom }}"}}}
    with pytest.raises(TemplateError) as refused:
        validate_content(content, vocabulary=CART, keys=EMAIL)
    assert refused.value.part == "variants.fr.subject" and "ctx.prenom" in refused.value.message


@pytest.mark.parametrize("variants", [["fr"], {"fr": "Bonjour"}, {"fr": {"title": "Bonjour"}}])
def test_malformed_variants_are_reported(variants):
    with pytest.raises(TemplateError) as refused:
        validate_content({"subject": "Hi", "variants": variants}, vocabulary=CART, keys=EMAIL)
    assert refused.value.part.startswith("variants")


# --- The sandbox -------------------------------------------------------------------------------

ATTACKS = [
    "{{ ctx.__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ctx.items.__globals__ }}",
    "{{ ctx.firstName.__class__ }}",
    "{{ ctx['__class__'] }}",
    "{{ ctx.firstName | attr('__class__') }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% set s = ctx.firstName %}{{ s.__class__.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ config }}",
    "{{ config.SECRET_KEY }}",
    "{{ settings.SECRET_KEY }}",
    "{{ request }}",
    "{{ lipsum.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ range(10) }}",
    '{% include "x" %}',
    '{% import "forms.html" as forms %}',
    '{% from "x" import y %}',
    '{% extends "base.html" %}',
]


@pytest.mark.parametrize("source", ATTACKS)
def test_templates_reaching_for_python_internals_or_settings_are_refused(source):
    refusal(source, vocabulary=CART)
    refusal(source, vocabulary=PROFILE_BASED)


@pytest.mark.parametrize("source", ATTACKS)
def test_a_template_that_got_past_validation_renders_nothing_dangerous(source):
    """Defence in depth: even unvalidated, the sandbox and the plain-data context reveal nothing."""
    context = {"ctx": {"firstName": "Jack", "items": [1]}, "event": {"PKey": "p", "eventId": "EVTx"}}
    for part in ("html", "text"):
        try:
            output = compile_template(source, part=part).render(context)
        except Exception as error:  # refused at render time: fine, as long as it leaks nothing
            output = f"{type(error).__name__}: {error}"
        assert settings.SECRET_KEY not in output
        assert "<class" not in output and "<module" not in output and "function" not in output


def test_event_data_is_a_value_never_a_template(db):
    ctx = {"firstName": "{{ 7*7 }}", "nickname": "{% for x in ctx %}{{ x }}{% endfor %}", "points": 1}
    content = {
        "subject": "{{ ctx.firstName }}",
        "html": "<p>{{ ctx.firstName }} {{ ctx.nickname }}</p>",
        "text": "{{ ctx.firstName }} {{ ctx.nickname }}",
    }
    rendered = render_content(content, keys=EMAIL, context={"ctx": ctx})
    assert rendered["subject"] == "{{ 7*7 }}"
    assert rendered["text"] == "{{ 7*7 }} {% for x in ctx %}{{ x }}{% endfor %}"
    assert "49" not in "".join(rendered.values())


@pytest.mark.django_db
def test_event_data_shaped_like_a_template_is_sent_literally(cart_configuration):
    version = cart_configuration.message.live_version
    event = Event(
        configuration=cart_configuration,
        email="jack@example.com",
        ctx={"firstName": "{{ 7*7 }}", "lastProduct": "{{ settings.SECRET_KEY }}", "cartAmount": "$1"},
    )
    rendered = compose(version=version, event=event)
    assert rendered.parts["subject"] == "{{ 7*7 }}, your cart is waiting"
    assert "{{ settings.SECRET_KEY }}" in rendered.parts["text"]
    assert not any("49" in part or settings.SECRET_KEY in part for part in rendered.parts.values())


@pytest.mark.django_db
def test_the_context_a_template_sees_is_plain_data(cart_configuration, organization):
    profile = ProfileFactory(organization=organization, data={"tier": "gold"})
    event = Event(
        configuration=cart_configuration, email="jack@example.com", pk=1, created_at=dt.datetime.now(dt.UTC)
    )
    context = template_context(event=event, ctx={"firstName": "Jack"}, profile=profile, event_id="EVTcart")

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, str | int | float | bool)

    assert plain(context), context
    assert context["profile"]["tier"] == "gold" and context["unsubscribe_url"].startswith("http")


def test_the_sandbox_refuses_to_mutate_event_data():
    source = "{{ ctx.products.append(1) }}{{ ctx.products | length }}"
    with pytest.raises(SecurityError):
        compile_template(source, part="text").render({"ctx": {"products": []}})


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'a' * 10000000 }}",
        "{{ ctx.firstName * 10000000 }}",
        "{{ 2 ** 100000 }}",
        "{{ 'x' | center(10000000) }}",
        "{{ '%10000000d' % 1 }}",
        "{{ '%10000000d' | format(1) }}",
        "{{ '{:>10000000}'.format(1) }}",
        "{{ ctx.firstName.ljust(10000000) }}",
        "{{ [1] | batch(10000000, 0) | list }}",
    ],
)
def test_templates_that_would_exhaust_the_server_are_stopped(source):
    validate_template(source, part="text", vocabulary=CART)  # saving stays instant: nothing is folded
    with pytest.raises(SecurityError):
        compile_template(source, part="text").render({"ctx": {"firstName": "Jack"}})


def test_ordinary_arithmetic_and_formatting_still_work():
    source = "{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ '%05.1f' % 3.14159 }} {{ '{:>4}'.format(7) }} {{ 10 % 3 }}"
    assert render(source, part="text") == "ababab 1024 003.1    7 1"


def test_large_numbers_in_the_data_are_not_mistaken_for_attacks():
    source = (
        "{{ '{:,}'.format(ctx.points) }} {{ ctx.points * 1000000 }} {{ ctx.nickname | default(150000) }}"
        " {{ ctx.firstName | truncate(200000) }} {{ '%d' % ctx.points }}"
    )
    rendered = render(source, part="text", points=5000000, firstName="Jack")
    assert rendered == "5,000,000 5000000000000 150000 Jack 5000000"


# --- Bounds of rendering -------------------------------------------------------------------------

# The probes' templates: a 252-character subject that folds into 10 billion characters, and two
# loops of 100,000 iterations each, one inside the other.
CHAINED_REPLACE = '{{ "aaaaaaaaaa"' + '|replace("a","aaaaaaaaaa")' * 9 + " }}"
NESTED_LOOPS = '{% for a in "x"*100000 %}{% for b in "x"*100000 %}{{ b }}{% endfor %}{% endfor %}'


def render_text(source: str, **ctx: Any) -> str:
    return render_content({"text": source}, keys=("text",), context={"ctx": ctx})["text"]


def limit_error(source: str, **ctx: Any) -> str:
    with pytest.raises(TemplateError) as refused:
        render_text(source, **ctx)
    assert refused.value.part == "text"
    return refused.value.message


def test_the_probes_templates_are_the_ones_described():
    assert len(CHAINED_REPLACE) == 252


def test_compiling_computes_nothing_of_the_template(monkeypatch):
    """No constant folding: a filter on constants runs when the template renders, never when it is
    compiled (which happens when a template is merely saved)."""
    calls = []
    replace = TEXT_ENVIRONMENT.filters["replace"]

    @functools.wraps(replace)  # keeps Jinja's mark that the filter takes the evaluation context
    def spy(*args: Any) -> Any:
        calls.append(args)
        return replace(*args)

    monkeypatch.setitem(TEXT_ENVIRONMENT.filters, "replace", spy)
    printed = TEXT_ENVIRONMENT.from_string('{{ "ab"|replace("a", "c") }}')
    assigned = TEXT_ENVIRONMENT.from_string('{% set s = "ab"|replace("a", "c") %}{{ s }}')
    autoescape = TEXT_ENVIRONMENT.from_string(
        '{% autoescape "ab"|replace("a", "") %}{{ "<" }}{% endautoescape %}'
    )
    assert calls == []
    assert printed.render() == "cb" and assigned.render() == "cb" and autoescape.render() == "&lt;"
    assert len(calls) == 3


def test_the_chained_replace_compiles_at_once_and_is_refused_when_rendered():
    validate_template(CHAINED_REPLACE, part="subject", vocabulary=CART)  # compiles: nothing is folded
    with pytest.raises(TemplateError) as refused:
        render_content({"subject": CHAINED_REPLACE}, keys=("subject",), context={"ctx": {}})
    assert refused.value.part == "subject"
    assert "10,000,000 characters" in refused.value.message
    assert "beyond the limit of 1,000,000 (RENDER_MAX_OUTPUT_CHARS)" in refused.value.message


def test_nested_loops_stop_at_the_loop_budget():
    message = limit_error(NESTED_LOOPS)
    assert message == "the template's loops exceeded 100,000 iterations (RENDER_MAX_LOOP_ITERATIONS)"


def test_the_loop_budget_counts_every_iteration_of_a_message(settings):
    settings.RENDER_MAX_LOOP_ITERATIONS = 1000
    items = [{"sku": str(n)} for n in range(1000)]
    assert render_text("{% for p in ctx.products %}.{% endfor %}", products=items) == "." * 1000
    assert "1,000 iterations" in limit_error(
        "{% for p in ctx.products %}{% endfor %}{% for p in ctx.products if p %}{% endfor %}",
        products=[1] * 501,
    )
    assert "1,000 iterations" in limit_error(
        "{% for a in ctx.products %}{% for b in ctx.products %}{% endfor %}{% endfor %}", products=[1] * 32
    )
    # Parts share the budget: 600 iterations in the subject and 600 in the text are too many.
    loop = "{% for p in ctx.products %}{% endfor %}"
    with pytest.raises(TemplateError, match="RENDER_MAX_LOOP_ITERATIONS"):
        render_content(
            {"subject": loop, "text": loop},
            keys=("subject", "text"),
            context={"ctx": {"products": [1] * 600}},
        )


def test_a_recursive_loop_counts_its_iterations_too(settings):
    settings.RENDER_MAX_LOOP_ITERATIONS = 100
    tree = {"c": [{"c": [{"c": []}] * 9}] * 9}  # 9 + 81 + 0 = 90 iterations
    source = "{% for node in ctx.tree.c recursive %}.{{ loop(node.c) }}{% endfor %}"
    assert render_text(source, tree=tree) == "." * 90
    tree = {"c": [{"c": [{"c": []}] * 10}] * 10}  # 110
    assert "100 iterations" in limit_error(source, tree=tree)


def test_the_render_deadline_stops_a_template_that_runs_long(settings):
    settings.RENDER_MAX_LOOP_ITERATIONS = 10**12  # only the deadline is left to stop it
    settings.RENDER_TIMEOUT_SECONDS = 0.01
    assert (
        limit_error(NESTED_LOOPS)
        == "the template exceeded the render deadline of 0.01 s (RENDER_TIMEOUT_SECONDS)"
    )


def test_the_render_deadline_stops_a_template_without_loops(settings):
    settings.RENDER_TIMEOUT_SECONDS = 0.01
    # Each `map` calls a filter 100,000 times: every call checks the deadline.
    source = "{{ (['x'] * 100000)" + " | map('upper') | map('lower')" * 10 + " | list | length }}"
    assert "render deadline of 0.01 s" in limit_error(source)


def test_the_output_cap_counts_each_part(settings):
    settings.RENDER_MAX_OUTPUT_CHARS = 1000
    source = "{% for p in ctx.products %}{{ 'x' * 100 }}{% endfor %}"
    assert len(render_text(source, products=[1] * 10)) == 1000
    assert limit_error(source, products=[1] * 11) == (
        "the template's output exceeded 1,000 characters (RENDER_MAX_OUTPUT_CHARS)"
    )
    # Literal text counts as well as values, and each part has the whole cap.
    literal = "{% for p in ctx.products %}" + "y" * 100 + "{% endfor %}"
    both = render_content(
        {"subject": literal, "text": literal},
        keys=("subject", "text"),
        context={"ctx": {"products": [1] * 10}},
    )
    assert both == {"subject": "y" * 1000, "text": "y" * 1000}


def test_text_captured_by_a_set_block_counts_against_the_output_cap(settings):
    settings.RENDER_MAX_OUTPUT_CHARS = 1000
    for body in ("{{ 'x' * 100 }}", "y" * 100):  # values and literal text alike
        source = "{% set s %}{% for p in ctx.products %}" + body + "{% endfor %}{% endset %}{{ s | length }}"
        assert render_text(source, products=[1] * 9) == "900"
        assert "RENDER_MAX_OUTPUT_CHARS" in limit_error(source, products=[1] * 11)


BIG = "{% set big = 'x' * 100000 %}"


@pytest.mark.parametrize(
    "source",
    [
        CHAINED_REPLACE,
        BIG + "{{ big.replace('x', big) }}",
        BIG
        + "{% set b = big ~ big %}{% set c = b ~ b %}{% set d = c ~ c %}{% set e = d ~ d %}{{ e | length }}",
        BIG
        + "{% set b = big + big %}{% set c = b + b %}{% set d = c + c %}{% set e = d + d %}{{ e | length }}",
        BIG + "{{ ([big] * 1000) | join }}",
        BIG + "{{ ([big] * 1000) | join(',') }}",
        BIG + "{{ ','.join([big] * 1000) }}",
        "{{ ('y' * 1000).join(['a'] * 100000) }}",
        BIG + "{{ ('%s' * 1000) % ((big,) * 1000) }}",
        BIG + "{{ ('%(a)s' * 1000) % {'a': big} }}",
        BIG + "{{ ('%s' * 1000) | format(*((big,) * 1000)) }}",
        BIG + "{{ ('{0}' * 1000).format(big) }}",
        BIG + "{{ ('{a}' * 1000).format_map({'a': big}) }}",
        "{{ ('\\n' * 10000) | indent(1000) }}",
        "{{ ('\\t' * 10000).expandtabs(10000) }}",
        "{{ ('x' * 10000) | wordwrap(1, wrapstring='y' * 1000) }}",
        "{{ ('a.co ' * 20000) | urlize(target='y' * 1000) }}",
        BIG + "{{ big.translate({120: 'y' * 1000}) }}",
    ],
)
def test_a_value_larger_than_a_part_may_be_is_refused_before_it_is_built(source):
    assert "RENDER_MAX_OUTPUT_CHARS" in limit_error(source)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ((10 ** 1000) ** 1000) | length }}",
        "{{ ((10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000)) | length }}",
        "{{ ([[1]] * 100000) | sum(start=[]) | length }}",
    ],
)
def test_numbers_and_sums_that_would_take_long_are_refused(source):
    assert "too" in limit_error(source)


def test_ordinary_joins_replacements_and_sums_still_work():
    source = (
        "{{ ctx.products | join(', ', attribute='sku') }} | {{ ctx.firstName.replace('a', 'o') }} | "
        "{{ ctx.products | sum(attribute='price') }} | {{ 'a\\nb' | indent(2, first=True) }} | "
        "{{ ['x', 'y'] | join('-') }} | {{ ('ab' ~ ctx.firstName) + '!' }} | {{ [1] + [2] }}"
    )
    products = [{"sku": "A1", "price": 2}, {"sku": "B2", "price": 3}]
    assert render_text(source, products=products, firstName="Jack") == (
        "A1, B2 | Jock | 5 |   a\n  b | x-y | abJack! | [1, 2]"
    )


def test_the_bounds_are_checked_on_save_with_sample_data_naming_the_part():
    context = {"ctx": {"firstName": "Jack"}}
    content = {"subject": "Hi", "text": "fine", "variants": {"fr": {"text": NESTED_LOOPS}}}
    with pytest.raises(TemplateError) as refused:
        check_render_bounds(content, keys=("subject", "text"), context=context)
    assert refused.value.part == "variants.fr.text"
    assert "RENDER_MAX_LOOP_ITERATIONS" in refused.value.message
    # Errors that are not bounds are left to the preview: the sample data is not the events' data.
    check_render_bounds(
        {"subject": "{{ ctx.firstName + 1 }}", "text": "x"}, keys=("subject", "text"), context=context
    )


def test_a_nested_list_repeated_by_reference_is_refused_before_it_is_printed(settings):
    """`[[0]*100000]*3000` is 3,000 references to one list: cheap to build, 900 MB to print."""
    with pytest.raises(TemplateError, match="built a value of .* beyond the limit"):
        render_content({"text": "{{ [[0]*100000]*3000 }}"}, keys=("text",), context={"ctx": {}})


def test_a_template_that_runs_out_of_memory_is_a_bound_not_a_crash(monkeypatch):
    from messages import rendering

    def exhausted(*args, **kwargs):
        raise MemoryError

    template = rendering.compile_template("{{ ctx.x }}", part="text")
    monkeypatch.setattr(type(template), "render", exhausted)
    with pytest.raises(TemplateError, match="more memory than a message may use"):
        check_render_bounds({"text": "{{ ctx.x }}"}, keys=("text",), context={"ctx": {"x": 1}})


def test_the_save_time_check_of_many_languages_shares_one_deadline(settings):
    """Each language alone renders well within the deadline; all of them together do not."""
    settings.RENDER_TIMEOUT_SECONDS = 0.5
    busy = '{% for a in "x"*50 %}{% set s = ("x"*90000)|replace("x","yy") %}{% endfor %}'
    check_render_bounds({"text": busy}, keys=("text",), context={"ctx": {}})  # one language: fine
    variants = {f"l{i:03}": {"text": busy} for i in range(50)}
    with pytest.raises(TemplateError, match="render deadline"):
        check_render_bounds({"text": busy, "variants": variants}, keys=("text",), context={"ctx": {}})


def test_a_message_has_at_most_fifty_language_variants():
    variants = {f"l{i:03}": {"text": "hi"} for i in range(51)}
    with pytest.raises(TemplateError, match="at most 50 language variants"):
        validate_content({"text": "hi", "variants": variants}, vocabulary=None, keys=("text",))
