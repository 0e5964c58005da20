"""The marketer's extra admin pages of a message: preview with editable sample data, proofs,
the difference between versions, and republishing an older version.

Each view is reached through TransactionalMessageAdmin.get_urls, so the admin's login, permission
and organization scoping (get_object through the scoped queryset) apply before anything here runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import cast

from django import forms
from django.conf import settings
from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from campaign import bounds
from campaign.models import Profile
from messages import draft_try, services
from messages.channels import channel as channel_of
from messages.lifecycle import PublicationEffects, PublicationError, SampleDataError, event_side
from messages.models import DraftTry, MessageVersion, TransactionalMessage
from messages.rendering import HTML_PARTS, MAX_VARIANTS


def sample_data_from_text(raw: str, schema: dict) -> dict:
    """The sample data typed as JSON, under the API's own rules: what an event could not carry, a
    preview does not render (SampleDataError names the field: `ctx` for the whole). Empty: {}."""
    raw = raw.strip()
    if not raw:
        return {}
    try:
        value = bounds.load_json(raw)
    except bounds.JsonSyntaxError as error:
        raise SampleDataError("ctx", str(error)) from None
    if not isinstance(value, dict):
        raise SampleDataError("ctx", "The sample data is a JSON object, like the event's ctx.")
    return event_side().check_ctx(schema, value)  # SampleDataError naming the field


class PreviewForm(forms.Form):
    ctx = forms.CharField(
        label="Sample data (ctx, JSON)", widget=forms.Textarea(attrs={"rows": 12, "cols": 80}), required=False
    )

    def __init__(self, *args, schema: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.schema = schema

    def clean_ctx(self) -> dict:
        """The sample data under the API's own rules: what an event could not carry, a preview
        does not render."""
        try:
            return sample_data_from_text(self.cleaned_data["ctx"], self.schema)
        except SampleDataError as problem:
            raise forms.ValidationError(problem.message if problem.field == "ctx" else str(problem)) from None


class TestProfilePreviewForm(PreviewForm):
    profile = forms.ModelChoiceField(
        queryset=Profile.objects.none(),
        required=False,
        label="As test profile",
        help_text="Render with the test profile's fields and, if it has some for this event, its own "
        "sample data (instead of the data above).",
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        profile = cast(forms.ModelChoiceField, self.fields["profile"])
        profile.queryset = Profile.objects.filter(organization=organization, is_test=True)


class ProofForm(PreviewForm):
    addresses = forms.CharField(
        label="Test addresses",
        required=False,
        max_length=4000,
        help_text="Separated by commas or new lines: addresses of test profiles or of the proof "
        "allow-list that an administrator keeps.",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
    )
    profiles = forms.ModelMultipleChoiceField(
        queryset=Profile.objects.none(), required=False, label="Test profiles"
    )

    def __init__(self, *args, organization, channel: str, **kwargs):
        super().__init__(*args, **kwargs)
        of_channel = channel_of(channel)
        if not of_channel.profile_has_address:
            # A profile has no address on this channel (no push token): the allow-list only.
            del self.fields["profiles"]
            self.fields["addresses"].label = of_channel.proof_addresses_label
            self.fields[
                "addresses"
            ].help_text = "Separated by commas or new lines, from the proof allow-list."
        else:
            # Test profiles only: a marketer has no right to browse the marketing database here.
            profiles = cast(forms.ModelMultipleChoiceField, self.fields["profiles"])
            profiles.queryset = Profile.objects.filter(organization=organization, is_test=True)


def _message_or_404(model_admin, request, object_id) -> TransactionalMessage:
    message = model_admin.get_object(request, object_id)
    if message is None:
        raise Http404("No such message.")
    if not model_admin.has_view_permission(request, message):
        raise PermissionDenied
    return message


def _context(model_admin, request, message, **extra) -> dict:
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "original": message,
        "title": extra.pop("title"),
        "change_url": reverse("admin:transactional_transactionalmessage_change", args=[message.pk]),
        **extra,
    }


def preview_view(model_admin, request, object_id):
    message = _message_or_404(model_admin, request, object_id)
    schema = services.configuration_schema(message)
    default_ctx = event_side().sample_ctx(schema)
    form = TestProfilePreviewForm(
        request.POST or None,
        schema=schema,
        organization=message.configuration.organization,
        initial={"ctx": json.dumps(default_ctx, indent=2)},
    )
    ctx, profile = default_ctx, None
    if request.method == "POST" and form.is_valid():
        ctx = form.cleaned_data["ctx"]
        profile = form.cleaned_data.get("profile")
    rendered, error = None, ""
    try:
        if profile is not None:  # its own sample data, if it has some for this event
            own = services.profile_sample(message=message, profile=profile)
            ctx = own if own is not None else ctx
        rendered = services.preview_message(message=message, ctx=ctx, profile=profile)
    except Exception as exc:  # show the template's problem to the marketer, not a 500
        error = f"{exc.__class__.__name__}: {exc}"
    of_channel = channel_of(message.channel)
    return TemplateResponse(
        request,
        "admin/transactional/transactionalmessage/preview.html",
        _context(
            model_admin,
            request,
            message,
            title=f"Preview of {message.configuration.event_id}",
            form=form,
            rendered=rendered,
            error=error,
            channel=message.channel,
            preview_template=of_channel.preview_template,
            **(of_channel.preview_context(rendered) if rendered else {}),
        ),
    )


# The editor's live preview answers for what the change form could save: its body is bounded as the
# form's POST is (DATA_UPLOAD_MAX_MEMORY_SIZE), its parts as the form's fields are.
LIVE_PREVIEW_DEFAULT_MAX_BYTES = 2_621_440  # Django's own default, when the setting is None
LANGUAGE_MAX_LENGTH = 35  # a language tag (BCP 47 advises implementations keep 35 characters)


def live_preview_max_bytes() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or LIVE_PREVIEW_DEFAULT_MAX_BYTES


def _refused(status: int, *problems: tuple[str, str, int | None]) -> JsonResponse:
    return JsonResponse(
        {"errors": [{"field": field, "message": text, "line": line} for field, text, line in problems]},
        status=status,
    )


def _live_preview_request(body: bytes, *, keys: tuple[str, ...]) -> tuple[dict, str, str | None]:
    """(content, sample data text, language) of a live preview's body, or ValueError(field, why)."""
    try:
        data = bounds.load_json(body.decode("utf-8"))
    except (UnicodeDecodeError, bounds.JsonSyntaxError) as error:
        raise ValueError("body", str(error)) from None
    if not isinstance(data, dict):
        raise ValueError("body", 'an object: {"content": {...}, "ctx": "...", "language": null}')
    content = data.get("content")
    if not isinstance(content, dict):
        raise ValueError("content", "an object of the message's parts")
    sender = content.pop("from", None)  # the sender fields as typed (shown, not checked: the save does)
    for key in content:
        if key not in (*keys, "variants"):
            raise ValueError(key, "not a part of this message")
        if key != "variants" and not isinstance(content[key], str):
            raise ValueError(key, "must be text")
    if sender is not None:
        if not isinstance(sender, dict) or set(sender) - {"name", "address"}:
            raise ValueError("from", 'an object: {"name": ..., "address": ...}')
        for key, column in (("name", "from_name"), ("address", "from_address")):
            value = sender.get(key, "")
            limit = getattr(TransactionalMessage._meta.get_field(column), "max_length", None)
            problem = (
                bounds.text_problem(value, max_length=limit) if isinstance(value, str) else "must be text"
            )
            if problem:
                raise ValueError(f"from.{key}", problem)
        content["from"] = {"name": sender.get("name", ""), "address": sender.get("address", "")}
    variants = content.get("variants")
    if variants is not None and not isinstance(variants, dict):
        raise ValueError("variants", 'an object by language: {"fr": {...}}')
    if isinstance(variants, dict) and len(variants) > MAX_VARIANTS:
        raise ValueError("variants", f"at most {MAX_VARIANTS} language variants")
    # No NUL nor lone surrogate, as the form's fields refuse them (the body's cap bounds the length).
    texts = [(key, value) for key, value in content.items() if key not in ("variants", "from")]
    for language, variant in (variants or {}).items():
        if isinstance(variant, dict):
            texts += [(f"variants.{language}.{key}", value) for key, value in variant.items()]
    for field, value in texts:
        problem = (
            bounds.text_problem(value, max_length=live_preview_max_bytes())
            if isinstance(value, str)
            else None
        )
        if problem:
            raise ValueError(field, problem)
    ctx = data.get("ctx", "")
    if not isinstance(ctx, str):
        raise ValueError("ctx", "the sample data as JSON text")
    language = data.get("language")
    if language is not None and not (
        isinstance(language, str)
        and len(language) <= LANGUAGE_MAX_LENGTH
        and (language == "" or services.VARIANT_LANGUAGE.match(language))
    ):
        raise ValueError("language", 'a language code (fr, pt-BR), "" for the default content or null')
    return content, ctx, language


def live_preview_view(model_admin, request, object_id):
    """POST (JSON): the editor's unsaved content rendered as an event would be, through the same
    bounded renderer, with the sample data and in the chosen language; answers the parts, the
    variant used and the channel's own figures (SMS: length, characters forcing UCS-2), or 400 with
    `errors` naming each field, part and line. For who may change the message (it renders their
    edits), scoped to their organization as every page of the message."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    message = _changeable_message(model_admin, request, object_id)
    limit = live_preview_max_bytes()
    too_big = ("body", f"at most {limit:,} bytes, as the form", None)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return _refused(413, too_big)
    try:
        body = request.body
    except RequestDataTooBig:
        return _refused(413, too_big)
    if len(body) > limit:
        return _refused(413, too_big)
    of_channel = channel_of(message.channel)
    try:
        content, ctx_text, language = _live_preview_request(body, keys=of_channel.content_keys)
    except ValueError as error:
        field, why = error.args
        return _refused(400, (field, why, None))
    too_long = services.part_length_problems(channel=message.channel, content=content)
    if too_long:
        return _refused(400, *((p.part, p.message, None) for p in too_long))
    schema = services.configuration_schema(message)
    try:
        ctx = sample_data_from_text(ctx_text, schema) if ctx_text.strip() else event_side().sample_ctx(schema)
    except SampleDataError as error:
        return _refused(400, (error.field, error.message, None))
    preview = services.preview_unsaved(message=message, content=content, ctx=ctx, language=language)
    if preview.rendered is None:
        return _refused(400, *((p.part, p.message, p.line) for p in preview.problems))
    parts = [
        {
            "name": part.name,
            "label": part.label or part.name,
            "html": part.name in HTML_PARTS,
            "value": preview.rendered.parts.get(part.name, ""),
        }
        for part in of_channel.parts
    ]
    return JsonResponse(
        {
            "parts": parts,
            "variant": preview.variant,
            "variantUsed": f"Variant used: {preview.variant}" if preview.variant else "Default content",
            # The sender as the message shows it (the organization's when the form leaves it empty).
            "sender": (
                f"{preview.rendered.from_name} <{preview.rendered.from_address or '(default sender)'}>"
                if of_channel.uses_default_sender
                else ""
            ),
            **of_channel.preview_data(preview.rendered),
        }
    )


def proof_view(model_admin, request, object_id):
    message = _message_or_404(model_admin, request, object_id)
    if not model_admin.has_change_permission(request, message):
        raise PermissionDenied
    organization = message.configuration.organization
    schema = services.configuration_schema(message)
    default_ctx = event_side().sample_ctx(schema)
    form = ProofForm(
        request.POST or None,
        organization=organization,
        channel=message.channel,
        schema=schema,
        initial={"ctx": json.dumps(default_ctx, indent=2)},
    )
    if request.method == "POST" and form.is_valid():
        addresses = [a for chunk in form.cleaned_data["addresses"].splitlines() for a in chunk.split(",")]
        try:
            deliveries = services.send_proof(
                message=message,
                addresses=addresses,
                profiles=list(form.cleaned_data.get("profiles") or []),
                ctx=form.cleaned_data["ctx"] or default_ctx,
                user=request.user,
            )
        except services.ProofError as error:
            form.add_error(None, str(error))
        except Exception as error:  # a template that fails to render: tell, don't crash
            form.add_error(None, f"The proof could not be rendered: {error}")
        else:
            for delivery in deliveries:
                level = flash.SUCCESS if delivery.outcome == "sent" else flash.ERROR
                flash.add_message(
                    request,
                    level,
                    f"Proof to {delivery.recipient}: {delivery.outcome} {delivery.provider_response}".strip(),
                )
            return HttpResponseRedirect(
                reverse("admin:transactional_transactionalmessage_change", args=[message.pk])
            )
    return TemplateResponse(
        request,
        "admin/transactional/transactionalmessage/proof.html",
        _context(
            model_admin,
            request,
            message,
            title=f"Send a proof of {message.configuration.event_id}",
            form=form,
            proof_rate=settings.PROOF_RATE_PER_MINUTE,
        ),
    )


def diff_view(model_admin, request, object_id):
    """`?a=<number>&b=<number|draft>`: what changed between two versions (or a version and the draft)."""
    message = _message_or_404(model_admin, request, object_id)
    versions = {v.number: v for v in message.versions.all()}
    live = message.live_version.number if message.live_version else None

    def content_of(key: str | None, default):
        if key in (None, ""):
            return default
        if key == "draft":
            return ("draft", message.draft_content())
        try:
            version = versions[int(key)]
        except (ValueError, KeyError):
            raise Http404("No such version.") from None
        return (f"v{version.number}", version.content)

    older = content_of(request.GET.get("a"), (f"v{live}", versions[live].content) if live else ("empty", {}))
    newer = content_of(request.GET.get("b"), ("draft", message.draft_content()))
    differences = services.content_difference(older=older[1], newer=newer[1], channel=message.channel)
    return TemplateResponse(
        request,
        "admin/transactional/transactionalmessage/diff.html",
        _context(
            model_admin,
            request,
            message,
            title=f"{older[0]} → {newer[0]} of {message.configuration.event_id}",
            differences=differences,
            versions=sorted(versions.values(), key=lambda v: -v.number),
            live=message.published_version.number if message.published_version else None,
            older=older[0],
            newer=newer[0],
            has_change_permission=model_admin.has_change_permission(request, message),
        ),
    )


def _changeable_message(model_admin, request, object_id) -> TransactionalMessage:
    message = _message_or_404(model_admin, request, object_id)
    if not model_admin.has_change_permission(request, message):
        raise PermissionDenied
    return message


def _confirm_then(
    model_admin,
    request,
    message: TransactionalMessage,
    *,
    title: str,
    button: str,
    effects: PublicationEffects,
    act: Callable[[], str],
    **extra,
):
    """A publication move on its own page: GET says what it will do (`effects`), the page's POST
    makes it (`act` answers the success message) and goes back to the message."""
    change_url = reverse("admin:transactional_transactionalmessage_change", args=[message.pk])
    if request.method == "POST" and not effects.refusal:
        try:
            done = act()
        except PublicationError as error:
            for line in error.errors:
                flash.error(request, line)
        else:
            flash.success(request, done)
        return HttpResponseRedirect(change_url)
    return TemplateResponse(
        request,
        "admin/transactional/transactionalmessage/confirm.html",
        _context(
            model_admin,
            request,
            message,
            title=title,
            button=button,
            effects=effects,
            configuration=message.configuration,
            **extra,
        ),
    )


def pause_view(model_admin, request, object_id):
    message = _changeable_message(model_admin, request, object_id)

    def pause() -> str:
        event_side().pause(message=message, user=request.user)
        return f"The message of {message.configuration.event_id} is paused."

    return _confirm_then(
        model_admin,
        request,
        message,
        title=f"Pause the message of {message.configuration.event_id}?",
        button="Yes, pause",
        effects=event_side().pause_effects(message),
        act=pause,
        step="Pause",
    )


def unpublish_view(model_admin, request, object_id):
    message = _changeable_message(model_admin, request, object_id)

    def unpublish() -> str:
        event_side().unpublish(message=message, user=request.user)
        return f"The message of {message.configuration.event_id} is unpublished: its endpoint is down."

    return _confirm_then(
        model_admin,
        request,
        message,
        title=f"Unpublish the message of {message.configuration.event_id}?",
        button="Yes, unpublish",
        effects=event_side().unpublish_effects(message),
        act=unpublish,
        step="Unpublish",
    )


def republish_view(model_admin, request, object_id, number):
    message = _changeable_message(model_admin, request, object_id)
    version = MessageVersion.objects.filter(message=message, number=number).first()
    if version is None:
        raise Http404("No such version.")

    def republish() -> str:
        new_version = event_side().republish(version=version, user=request.user)
        return f"v{number} is live again (as v{new_version.number})."

    return _confirm_then(
        model_admin,
        request,
        message,
        title=f"Republish v{number} of {message.configuration.event_id}?",
        button=f"Yes, republish v{number}",
        effects=event_side().republish_effects(version),
        act=republish,
        step=f"Republish v{number}",
        version=version,
        versions_url=reverse("admin:transactional_transactionalmessage_versions", args=[message.pk]),
    )


class DraftTryForm(forms.Form):
    size = forms.IntegerField(
        label="Number of events",
        min_value=draft_try.MIN_EVENTS,
        max_value=draft_try.MAX_EVENTS,
        initial=draft_try.DEFAULT_EVENTS,
        help_text=f"The last events of this event type, up to {draft_try.MAX_EVENTS}.",
    )


RUNNING = (DraftTry.Status.PENDING, DraftTry.Status.RUNNING)


def try_view(model_admin, request, object_id):
    """ "Try this draft on the last N events": GET shows the form and the try asked (`?try=`) or the
    message's last one; POST stores a pending try, hands it to a worker and shows it (the page polls
    until it is done). For who may change the message; nothing is sent."""
    message = _changeable_message(model_admin, request, object_id)
    form = DraftTryForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        attempt = draft_try.start(message=message, size=form.cleaned_data["size"], user=request.user)
        url = reverse("admin:transactional_transactionalmessage_try", args=[message.pk])
        return HttpResponseRedirect(f"{url}?try={attempt.pk}")
    attempt = None
    asked = request.GET.get("try", "")
    if asked:
        if not (asked.isascii() and asked.isdigit() and len(asked) <= 18):
            raise Http404("No such try.")
        attempt = DraftTry.objects.filter(pk=int(asked), message=message).first()
        if attempt is None:
            raise Http404("No such try.")
    elif request.method == "GET":
        attempt = draft_try.latest(message)
    return TemplateResponse(
        request,
        "admin/transactional/transactionalmessage/try.html",
        _context(
            model_admin,
            request,
            message,
            title=f"Try the draft of {message.configuration.event_id} on real events",
            form=form,
            attempt=attempt,
            result=attempt.result if attempt is not None else {},
            running=attempt is not None and attempt.status in RUNNING,
            status_url=(
                reverse("admin:transactional_transactionalmessage_try_status", args=[message.pk, attempt.pk])
                if attempt is not None
                else ""
            ),
            step="Try on real events",
        ),
    )


def try_status_view(model_admin, request, object_id, try_id):
    """JSON {status, done, of}: what the try page polls while the worker fills the try."""
    message = _changeable_message(model_admin, request, object_id)
    attempt = DraftTry.objects.filter(pk=try_id, message=message).first()
    if attempt is None:
        raise Http404("No such try.")
    progress = (attempt.result or {}).get("progress") or {}
    return JsonResponse({"status": attempt.status, "done": progress.get("done"), "of": progress.get("of")})
