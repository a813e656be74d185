"""factory_boy factories for the data model; images are names only unless a test stores real bytes."""

import hashlib

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from webapp import models


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")


class InstructionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Instruction

    image_sha256 = factory.Sequence(lambda n: hashlib.sha256(str(n).encode()).hexdigest())
    image = factory.LazyAttribute(lambda o: f"images/{o.image_sha256[:2]}/{o.image_sha256}.png")
    width = 64
    height = 48
    question = factory.Sequence(lambda n: f"What is in picture {n}?")
    source = "test"


class IterationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Iteration

    number = factory.Sequence(lambda n: n + 1)
    policy = "tiny-llava"
    labeler = "tiny-llava"


class ResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Response

    iteration = factory.SubFactory(IterationFactory)
    instruction = factory.SubFactory(InstructionFactory)
    seed = factory.Sequence(lambda n: n)
    text = "A cat sits on a red sofa. The sofa is next to a window."


class ClaimFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Claim

    response = factory.SubFactory(ResponseFactory)
    index = factory.Sequence(lambda n: n)
    text = "A cat sits on a red sofa."
    question = "Is it true that a cat sits on a red sofa?"
    divided_by = "rule"


class VerdictFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Verdict

    claim = factory.SubFactory(ClaimFactory)
    labeler = factory.LazyAttribute(lambda o: o.claim.response.iteration.labeler)
    p_yes = 0.7
    p_no = 0.2
    accepted = factory.LazyAttribute(lambda o: o.p_yes > o.p_no)


class ReviewFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Review

    claim = factory.SubFactory(ClaimFactory)
    reviewer = factory.SubFactory(UserFactory)
    decision = models.Decision.HALLUCINATED


class PreferencePairFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.PreferencePair

    iteration = factory.SubFactory(IterationFactory)
    instruction = factory.SubFactory(InstructionFactory)
    chosen = factory.SubFactory(
        ResponseFactory,
        iteration=factory.SelfAttribute("..iteration"),
        instruction=factory.SelfAttribute("..instruction"),
    )
    rejected = factory.SubFactory(
        ResponseFactory,
        iteration=factory.SelfAttribute("..iteration"),
        instruction=factory.SelfAttribute("..instruction"),
    )
    score_gap = 1


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Job

    iteration = factory.SubFactory(IterationFactory)
    kind = models.JobKind.LABEL
    chunk = factory.Sequence(lambda n: n)
    total = 10
    state = models.JobState.PENDING
    # A job that ran has started: the progress counts a chunk's items from then.
    started_at = factory.LazyAttribute(lambda job: None if job.state == models.JobState.PENDING else timezone.now())
