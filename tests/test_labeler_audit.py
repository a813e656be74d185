"""The audit sample, the margin and the second labeler through the web app: drawn claims, audit reviews kept apart,
the estimate, calibration against hand-counted figures, the "what if", applying a margin, the disagreement queue."""

import pytest
from django.urls import reverse

from labeling.audit import STRATIFIED, UNIFORM
from tests.factories import ReviewFactory, UserFactory, VerdictFactory
from tests.review_data import SESSION_RENEWAL, reviewing_iteration
from webapp.models import (
    AuditAction,
    AuditEvent,
    AuditItem,
    Claim,
    Decision,
    IterationStatus,
    PreferencePair,
    Response,
    Review,
    response_scores,
)
from webapp.review.audit_sample import audit_result, start_audit, waiting_items
from webapp.review.calibration import calibration, labeler_agreement, what_if
from webapp.review.selectors import spot_check_queue
from webapp.review.service import ReviewClosed, apply_margin, record_review

pytestmark = pytest.mark.django_db

# Two instructions. Answer p_yes per claim (p_no = 1 − p_yes, so p_yes − p_no = 2 p_yes − 1):
# instruction A: answer 0 has claims 0.9, 0.55 (d 0.8, 0.1); answer 1 has 0.9, 0.9; answer 2 has 0.3 (d −0.4).
# instruction B: answer 0 has 0.58 (d 0.16); answer 1 has 0.95.
ANSWERS = ([[0.9, 0.55], [0.9, 0.9], [0.3]], [[0.58], [0.95]])


@pytest.fixture
def iteration():
    return reviewing_iteration(*ANSWERS, texts={0: "one two three", 1: "one two four", 2: "one two five"})


def stored_pairs(iteration):
    return set(PreferencePair.objects.filter(iteration=iteration).values_list("chosen", "rejected", "score_gap"))


def answer(iteration, instruction: int, seed: int) -> Response:
    instructions = sorted(iteration.instructions.values_list("pk", flat=True))
    return Response.objects.get(iteration=iteration, instruction=instructions[instruction], seed=seed)


def test_it_draws_the_whole_iteration_uniformly_and_serves_it_in_the_drawn_order(iteration):
    sample = start_audit(iteration, UserFactory(), UNIFORM, size=100, seed=3)
    items = list(AuditItem.objects.filter(sample=sample))
    assert len(items) == Claim.objects.filter(response__iteration=iteration).count() == 7
    assert sample.populations == [7]
    assert [item.claim_id for item in waiting_items(sample)] == [item.claim_id for item in items]
    again = start_audit(iteration, UserFactory(), UNIFORM, size=100, seed=3)
    assert [i.claim_id for i in again.items.order_by("position")] == [i.claim_id for i in items]
    assert AuditEvent.objects.filter(action=AuditAction.DRAW_AUDIT, iteration=iteration.number).count() == 2


def test_only_audit_reviews_count_towards_the_estimate(iteration):
    alice = UserFactory(username="alice")
    sample = start_audit(iteration, alice, UNIFORM, size=7, seed=0)
    first, second = list(waiting_items(sample)[:2])
    # A queue review of a drawn claim neither counts nor takes it out of the sample.
    record_review(first.claim, alice, Decision.HALLUCINATED)
    assert audit_result(sample).estimate.reviewed == 0
    assert waiting_items(sample).first() == first
    accepted = [Claim.objects.filter(pk=item.claim_id).with_effective_verdict().get() for item in (first, second)]
    # Audit reviews: the labeler right on the first claim, wrong on the second.
    record_review(
        first.claim,
        alice,
        Decision.CORRECT if accepted[0].labeler_accepted else Decision.HALLUCINATED,
        audit_sample=sample,
    )
    record_review(
        second.claim,
        alice,
        Decision.HALLUCINATED if accepted[1].labeler_accepted else Decision.CORRECT,
        audit_sample=sample,
    )
    estimate = audit_result(sample).estimate
    assert (estimate.reviewed, estimate.errors, estimate.rate) == (2, 1, 0.5)
    assert estimate.low < 0.5 < estimate.high and estimate.more_to_halve == 5
    assert first not in list(waiting_items(sample))


def test_an_audit_review_must_be_of_a_drawn_claim(iteration):
    sample = start_audit(iteration, UserFactory(), UNIFORM, size=1, seed=0)
    other = Claim.objects.filter(response__iteration=iteration).exclude(pk=sample.items.get().claim_id).first()
    with pytest.raises(ValueError, match="was not drawn in audit sample"):
        record_review(other, UserFactory(), Decision.CORRECT, audit_sample=sample)


def test_a_stratified_sample_keeps_each_bands_population(iteration):
    sample = start_audit(iteration, UserFactory(), STRATIFIED, size=5, seed=1)
    # p_yes 0.3 | 0.55, 0.58 | 0.9, 0.9, 0.9, 0.95
    assert sample.populations == [0, 1, 2, 0, 4]
    assert sorted(sample.items.values_list("stratum", flat=True)) == [1, 2, 2, 4, 4]


def test_calibration_matches_a_hand_count(iteration):
    # Reviewers: the 0.55 claim is hallucinated, the 0.58 one too, one 0.9 correct, the 0.3 correct.
    reviewer = UserFactory()
    by_p = {}
    for claim in Claim.objects.filter(response__iteration=iteration).select_related("response"):
        by_p.setdefault(claim.verdicts.get().p_yes, []).append(claim)
    for p, decision in (
        (0.55, Decision.HALLUCINATED),
        (0.58, Decision.HALLUCINATED),
        (0.9, Decision.CORRECT),
        (0.3, Decision.CORRECT),
    ):
        record_review(by_p[p][0], reviewer, decision)
    figures = calibration(iteration)
    assert figures.from_reviews == 4 and figures.from_truth == 0 and figures.reviewed == 4
    assert [(b.low, b.n, b.share_true) for b in figures.bins if b.n] == [(0.3, 1, 1.0), (0.5, 2, 0.0), (0.9, 1, 1.0)]
    # ECE: |1 − 0.3|·1/4 + |0 − 0.565|·2/4 + |1 − 0.9|·1/4
    assert figures.ece == pytest.approx(0.7 / 4 + 0.565 / 2 + 0.1 / 4)
    # d: −0.4 true, 0.1 false, 0.16 false, 0.8 true: any m ≥ 0.16 and < 0.8 gets 3 of 4 (m = 0: 1); the
    # candidates are −0.41, −0.15, 0.13, 0.48, 0.81: the best, 0.48.
    assert figures.fit.margin == pytest.approx(0.48)
    assert (figures.fit.agree, figures.fit.agree_at_zero, figures.fit.n) == (3, 1, 4)


def test_the_what_if_and_applying_a_margin_rebuild_the_pairs_as_counted_by_hand(iteration):
    bob = UserFactory(username="bob", is_staff=True)
    a0, a1, a2 = (answer(iteration, 0, seed) for seed in range(3))
    b0, b1 = answer(iteration, 1, 0), answer(iteration, 1, 1)
    # m = 0: A scores 0, 0, −1 → pairs a0≻a2, a1≻a2; B: 0, 0 → none.
    assert stored_pairs(iteration) == {(a0.pk, a2.pk, 1), (a1.pk, a2.pk, 1)}
    # m = 0.2 rejects d 0.1 (a0) and 0.16 (b0): A scores −1, 0, −1 → a1≻a0, a1≻a2 (a0≻a2 gone);
    # B: −1, 0 → b1≻b0 appears.
    changes = what_if(iteration, 0.2)
    assert (changes.changed, changes.appeared, changes.disappeared, changes.unchanged) == (0, 2, 1, 1)
    assert stored_pairs(iteration) == {(a0.pk, a2.pk, 1), (a1.pk, a2.pk, 1)}  # a what-if changes nothing
    applied = apply_margin(iteration.pk, bob, 0.2)
    assert applied == changes
    assert stored_pairs(iteration) == {(a1.pk, a0.pk, 1), (a1.pk, a2.pk, 1), (b1.pk, b0.pk, 1)}
    iteration.refresh_from_db()
    assert iteration.margin == 0.2
    [record] = iteration.metrics["margins"]
    assert (record["margin"], record["previous"], record["by"]) == (0.2, 0.0, "bob")
    assert record["pairs"] == {"changed": 0, "appeared": 2, "disappeared": 1, "unchanged": 1}
    event = AuditEvent.objects.get(action=AuditAction.MARGIN)  # on the audit trail, in the same transaction
    assert (event.iteration, event.details["previous"], event.details["pairs"]) == (
        iteration.number,
        0.0,
        record["pairs"],
    )
    # The cached scores follow, equal to a recompute in SQL.
    scores = {r.pk: -r.n_rejected for r in response_scores(Response.objects.filter(iteration=iteration))}
    assert {r.pk: r.score for r in Response.objects.filter(iteration=iteration)} == scores
    assert scores[a0.pk] == -1 and scores[b0.pk] == -1


def test_reviews_still_win_over_a_margin(iteration):
    a0, a2 = answer(iteration, 0, 0), answer(iteration, 0, 2)
    weak = a0.claims.get(index=1)  # d 0.1: rejected under m = 0.2
    record_review(weak, UserFactory(), Decision.CORRECT)
    apply_margin(iteration.pk, UserFactory(is_staff=True), 0.2)
    a0.refresh_from_db()
    assert a0.score == 0
    assert (a0.pk, a2.pk, 1) in stored_pairs(iteration)


def test_a_margin_is_applied_only_at_the_review_gate_and_within_bounds(iteration):
    with pytest.raises(ValueError, match="between -1 and 1"):
        apply_margin(iteration.pk, UserFactory(), 1.5)
    iteration.status = IterationStatus.TRAINING
    iteration.save(update_fields=["status"])
    with pytest.raises(ReviewClosed):
        apply_margin(iteration.pk, UserFactory(), 0.2)


def test_only_staff_apply_a_margin_and_draw_a_sample(client, alice, bob, iteration):
    client.force_login(alice)
    assert client.post(reverse("iteration-margin", args=[iteration.number]), {"margin": "0.2"}).status_code == 403
    start = reverse("review-audit-start", args=[iteration.number])
    assert client.post(start, {"design": UNIFORM, "size": 5}).status_code == 403
    assert client.get(reverse("iteration-calibration", args=[iteration.number])).status_code == 200
    client.force_login(bob)
    client.post(start, {"design": UNIFORM, "size": 5})
    page = client.get(reverse("review-audit", args=[iteration.number])).content.decode()
    assert "Uniform sample of 5 claims (of 7)" in page
    response = client.post(reverse("iteration-margin", args=[iteration.number]), {"margin": "0.2"})
    assert response.status_code == 302
    iteration.refresh_from_db()
    assert iteration.margin == 0.2


def test_an_audit_page_posts_only_to_its_latest_sample(client, bob, iteration):
    client.force_login(bob)
    old = start_audit(iteration, bob, UNIFORM, size=3, seed=0)
    start_audit(iteration, bob, UNIFORM, size=3, seed=1)
    claim = old.items.first().claim_id
    response = client.post(reverse("review-audit", args=[iteration.number]), {"sample": old.pk, "correct": claim})
    assert response.status_code == 409 and b"newer audit sample" in response.content


def test_an_audit_decision_on_a_claim_not_drawn_is_a_404_and_odd_ids_are_ignored(client, bob, iteration):
    """Found by an attack: a claim outside the sample, or `?last=²` (a digit to isdigit(), not to int()), was a
    500."""
    client.force_login(bob)
    sample = start_audit(iteration, bob, UNIFORM, size=3, seed=0)
    drawn = set(sample.items.values_list("claim", flat=True))
    other = Claim.objects.filter(response__iteration=iteration).exclude(pk__in=drawn).first()
    url = reverse("review-audit", args=[iteration.number])
    assert client.post(url, {"sample": sample.pk, "correct": other.pk}).status_code == 404
    assert not Review.objects.filter(claim=other).exists()
    assert client.get(url + "?last=²").status_code == 200
    assert client.get(reverse("iteration-new") + "?from=²").status_code == 200


def test_the_dashboard_shows_audits_in_a_fixed_number_of_queries(client, bob, django_assert_max_num_queries):
    for _ in range(3):
        audited = reviewing_iteration(*ANSWERS)
        sample = start_audit(audited, bob, UNIFORM, size=7, seed=0)
        for item in sample.items.all()[:3]:
            record_review(item.claim, bob, Decision.CORRECT, audit_sample=sample)
    client.force_login(bob)
    with django_assert_max_num_queries(14 + SESSION_RENEWAL):
        page = client.get("/").content.decode()
    assert page.count("more halve it") == 3


def test_a_second_labelers_disagreements_come_first_and_their_agreement_is_counted():
    iteration = reviewing_iteration([[0.9, 0.6, 0.52]], config={"second_labeler": "other-labeler"})
    claims = {c.index: c for c in Claim.objects.filter(response__iteration=iteration)}
    # The second labeler agrees on claims 0 and 2 (2 is the most uncertain) and disagrees on claim 1.
    for index, (p_yes, p_no) in {0: (0.8, 0.2), 1: (0.3, 0.7), 2: (0.6, 0.4)}.items():
        VerdictFactory(claim=claims[index], labeler="other-labeler", p_yes=p_yes, p_no=p_no)
    order = spot_check_queue(iteration)
    first = claims[1].verdicts.get(labeler=iteration.labeler).pk
    assert order[0] == first
    agreement = labeler_agreement(iteration)
    assert (agreement.second, agreement.agree, agreement.n) == ("other-labeler", 2, 3)
    ReviewFactory(claim=claims[1], decision=Decision.CORRECT, iteration=iteration)
    assert first not in spot_check_queue(iteration)


def test_the_label_stage_runs_the_second_labeler_too(settings, tiny_models_dir, media_root):
    from PIL import Image

    from tests.factories import ClaimFactory, InstructionFactory, IterationFactory, JobFactory, ResponseFactory
    from webapp.jobs import rlaifv
    from webapp.models import JobKind, JobState, ResponseStatus, Verdict

    settings.MODELS_DIR = str(tiny_models_dir)
    iteration = IterationFactory(
        labeler="tiny-llava", status=IterationStatus.LABELING, config={"second_labeler": "coin-flip"}
    )
    instruction = InstructionFactory()
    path = media_root / instruction.image.name
    path.parent.mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 80, 40)).save(path)
    response = ResponseFactory(iteration=iteration, instruction=instruction, status=ResponseStatus.DIVIDED)
    for index in range(3):
        ClaimFactory(response=response, index=index, question=f"Is there a cat number {index}?")
    job = JobFactory(iteration=iteration, kind=JobKind.LABEL, chunk=0, instruction_ids=[instruction.pk])
    rlaifv.label(job)
    job.refresh_from_db()
    assert (job.state, job.done, job.total) == (JobState.SUCCEEDED, 6, 6)
    labelers = sorted(Verdict.objects.filter(claim__response=response).values_list("labeler", flat=True))
    assert labelers == ["coin-flip"] * 3 + ["tiny-llava"] * 3
    assert labeler_agreement(iteration).n == 3


def test_the_calibration_page_counts_reviews_where_the_pictures_truth_is_known(client, alice, iteration):
    """Found on first use: it said "0 decided by reviewers" after 12 reviews (in the shapes world every claim's
    truth is the picture's, which the page uses; it now says how many were reviewed)."""
    from webapp.models import Instruction

    Instruction.objects.filter(iterations=iteration).update(objects_present=["red circle"])
    Claim.objects.filter(response__iteration=iteration).update(question="Is there a red circle in the image?")
    for claim in Claim.objects.filter(response__iteration=iteration)[:3]:
        record_review(claim, alice, Decision.CORRECT)
    figures = calibration(iteration)
    assert (figures.from_reviews, figures.reviewed) == (0, 3) and figures.from_truth > 0
    client.force_login(alice)
    page = " ".join(client.get(reverse("iteration-calibration", args=[iteration.number])).content.decode().split())
    assert "0 more decided by reviewers" in page
    assert "(3 claims reviewed in all: where a picture's objects are known, they are the truth)" in page
