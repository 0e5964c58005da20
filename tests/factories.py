"""factory_boy factories for the models tests build on."""

from __future__ import annotations

import factory
from django.contrib.auth.models import Group, User

from campaign.models import Membership, Organization, Profile, SenderDomain
from campaign.roles import ADMINISTRATORS, MARKETERS
from events.models import EventConfiguration, EventField


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization
        django_get_or_create = ("slug",)
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"org{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    sender_name = factory.LazyAttribute(lambda o: o.slug.title())
    sender_address = factory.LazyAttribute(lambda o: f"news@{o.slug}.example.com")

    @factory.post_generation
    def sender_domains(self, create, extracted, **kwargs):
        """The domains the tests' messages send from: the default sender's, `<slug>.example` (the
        README's and the examples' `shop@geometrixx.example`) and example.com. Pass
        `sender_domains=[...]` to declare others (an empty list: none)."""
        if not create:
            return
        domains = (
            extracted
            if extracted is not None
            else [f"{self.slug}.example.com".lower(), f"{self.slug}.example".lower(), "example.com"]
        )
        for domain in domains:
            SenderDomain.objects.get_or_create(organization=self, domain=domain)


class ConfigurationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EventConfiguration

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"event{n}")
    label = "An event"
    channel = "email"
    targeting = "event"


class FieldFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EventField

    configuration = factory.SubFactory(ConfigurationFactory)
    name = factory.Sequence(lambda n: f"field{n}")
    type = "text"


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    organization = factory.SubFactory(OrganizationFactory)
    email = factory.Sequence(lambda n: f"person{n}@example.com")
    first_name = "Jane"
    last_name = "Doe"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def post(self, create, extracted, **kwargs):
        self.save()


def member(*, organization: Organization, role: str) -> User:
    """A staff user of `organization` with the role ADMINISTRATORS or MARKETERS."""
    assert role in (ADMINISTRATORS, MARKETERS)
    user = UserFactory()
    Membership.objects.create(user=user, organization=organization)
    user.groups.add(Group.objects.get(name=role))
    return user
