"""The data model (docs/DESIGN.md §2). Every invariant the code relies on is a database constraint.

Instruction → Response (one per iteration, instruction, seed) → Claim → Verdict (one per labeler)
and Review (append-only human decisions). Pairs and scores follow each claim's *effective* verdict:
its latest decisive review that no undo names, else the iteration labeler's verdict.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models import Case, ExpressionWrapper, F, FilteredRelation, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Abs, Coalesce, Greatest, Least
from django.utils import timezone

from webapp import limits


class Split(models.TextChoices):
    """Train: what iterations answer. Validation: what settings are chosen on (an evaluation's `eval_split`).
    Held-out: the test split, read only by the reported evaluation and the benches, never tuned on."""

    TRAIN = "train", "train"
    VALIDATION = "validation", "validation"
    HELDOUT = "heldout", "held-out (test)"


class Instruction(models.Model):
    """An image and a question: the unit the policy answers n times per iteration."""

    image = models.ImageField(upload_to="images/", help_text="Content-addressed: images/<sha256[:2]>/<sha256>.<ext>")
    image_sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    question = models.TextField(validators=[MaxLengthValidator(limits.QUESTION)])
    source = models.CharField(max_length=100, default="user")
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.TRAIN)
    objects_present = models.JSONField(
        null=True,
        blank=True,
        help_text="Ground truth, where known (a synthetic world): the objects the image shows, e.g. ['red circle']",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "image_sha256", "question"], name="instruction_unique"),
            models.CheckConstraint(condition=Q(split__in=Split.values), name="instruction_split_valid"),
            models.CheckConstraint(condition=~Q(question=""), name="instruction_question_nonempty"),
        ]
        indexes = [models.Index(fields=["source", "split"], name="instruction_source_split_idx")]

    def __str__(self):
        return f"#{self.pk} {self.question[:60]}"


class InstructionSource(models.Model):
    """A source and how many instructions carry it, kept by triggers on webapp_instruction (migration
    0018_instruction_source_counts): the dashboard and the pair list's filter read a handful of rows instead of
    grouping every instruction."""

    name = models.CharField(max_length=100, primary_key=True)
    instructions = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.instructions})"


class IterationStatus(models.TextChoices):
    DRAFT = "draft"
    GENERATING = "generating"
    DIVIDING = "dividing"
    LABELING = "labeling"
    COMBINING = "combining"
    REVIEWING = "reviewing"
    TRAINING = "training"
    EVALUATING = "evaluating"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Engine(models.TextChoices):
    TRANSFORMERS = "transformers"
    VLLM = "vllm"
    OPENAI = "openai"


class Iteration(models.Model):
    """One round of generate → divide → conquer → combine → review → train → evaluate."""

    Status = IterationStatus
    Engine = Engine

    number = models.PositiveIntegerField(unique=True)
    policy = models.CharField(max_length=500, help_text="Policy model: a folder under MODELS_DIR")
    labeler = models.CharField(max_length=500, help_text="Labeler VLM: a folder under MODELS_DIR, or coin-flip")
    splitter = models.CharField(max_length=500, default="rule", help_text="'rule', or the divide LLM's path")
    engine = models.CharField(max_length=20, choices=Engine.choices, default=Engine.TRANSFORMERS)
    config = models.JSONField(default=dict, blank=True, help_text="n, sampling, pairs per instruction, DPO settings")
    status = models.CharField(max_length=20, choices=IterationStatus.choices, default=IterationStatus.DRAFT)
    error = models.TextField(validators=[MaxLengthValidator(limits.ERROR)], blank=True)
    stopped_stage = models.CharField(
        max_length=20, blank=True, help_text="The stage it was in when it failed or was cancelled; resume restarts it"
    )
    instructions = models.ManyToManyField(Instruction, blank=True, related_name="iterations")
    checkpoint = models.CharField(max_length=500, blank=True, help_text="Checkpoint trained in this iteration")
    metrics = models.JSONField(default=dict, blank=True)
    margin = models.FloatField(
        default=0.0,
        editable=False,
        # webapp/review/service.py: apply_margin (the text is as the migration stored it).
        help_text="The verdict rule's margin m: the labeler accepts a claim when p_yes > p_no + m (0: RLAIF-V's "
        "rule). Staff change it at the review gate (webapp.review.apply_margin), recorded in metrics['margins']",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.CheckConstraint(condition=Q(margin__gte=-1, margin__lte=1), name="iteration_margin_range"),
            models.CheckConstraint(condition=Q(status__in=IterationStatus.values), name="iteration_status_valid"),
            models.CheckConstraint(condition=Q(engine__in=Engine.values), name="iteration_engine_valid"),
            models.CheckConstraint(condition=Q(number__gte=1), name="iteration_number_positive"),
        ]

    def __str__(self):
        return f"Iteration {self.number}"

    def advance(self, from_status: str, to_status: str, **fields) -> bool:
        """Move from one status to another in one conditional UPDATE, so only one worker ever wins."""
        won = Iteration.objects.filter(pk=self.pk, status=from_status).update(
            status=to_status, updated_at=timezone.now(), **fields
        )
        if won:
            self.refresh_from_db()
        return bool(won)

    @property
    def error_reason(self) -> str:
        """The error's first line: why it stopped, in one line (a training failure's log tail comes after)."""
        return self.error.strip().split("\n", 1)[0]

    @property
    def error_details(self) -> str:
        """What follows the first line of the error (a log tail, a traceback), or ""."""
        parts = self.error.strip().split("\n", 1)
        return parts[1].strip() if len(parts) > 1 else ""

    @classmethod
    def default_policy(cls) -> str:
        """Iteration k+1 starts from the checkpoint of the latest iteration that trained and evaluated one (done),
        as the dashboard's "can start from" says; one still evaluating, or that failed there, is not yet proven."""
        last = cls.objects.filter(status=IterationStatus.DONE).exclude(checkpoint="").order_by("-number").first()
        return last.checkpoint if last else ""


class ResponseStatus(models.TextChoices):
    GENERATED = "generated"
    DIVIDED = "divided"
    SPLIT_FAILED = "split_failed"
    LABELED = "labeled"


class Response(models.Model):
    """One sampled answer of the policy; its score is cached from the effective verdicts of its claims."""

    Status = ResponseStatus

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="responses")
    instruction = models.ForeignKey(Instruction, on_delete=models.PROTECT, related_name="responses")
    seed = models.BigIntegerField()
    text = models.TextField(
        validators=[MaxLengthValidator(limits.ANSWER)],
        help_text="Model output (policy answer): untrusted text, always escaped",
    )
    status = models.CharField(max_length=20, choices=ResponseStatus.choices, default=ResponseStatus.GENERATED)
    error = models.TextField(
        validators=[MaxLengthValidator(limits.ERROR)], blank=True, help_text="Why dividing failed, when it did"
    )
    score = models.IntegerField(
        null=True, blank=True, help_text="−(rejected claims, and repeated ones where config reject_repeats), cached"
    )
    repeated_claims = models.PositiveIntegerField(  # a database default: writers by COPY need not name it
        db_default=0,
        help_text="Claims repeating an earlier claim of this answer (labeling.answer_shape), set by divide",
    )
    reviewed = models.BooleanField(
        db_default=False,
        editable=False,
        help_text="A claim of it has a review standing (kept by a trigger on webapp_review)",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["iteration", "instruction", "seed"], name="response_unique_seed"),
            models.CheckConstraint(condition=Q(status__in=ResponseStatus.values), name="response_status_valid"),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | Q(score__lte=0), name="response_score_nonpositive"
            ),
        ]
        indexes = [models.Index(fields=["iteration", "status"], name="response_iteration_status_idx")]

    def __str__(self):
        return f"response {self.pk} (seed {self.seed})"


def accepted_under(margin, prefix: str = ""):
    """The verdict rule in SQL: the labeler accepts when p_yes > p_no + margin (labeling.calibration.accepts).
    `margin`: a number or an expression; `prefix`: the path to the verdict's fields."""
    margin = margin if hasattr(margin, "resolve_expression") else Value(float(margin))
    return ExpressionWrapper(
        Q(**{f"{prefix}p_yes__gt": F(f"{prefix}p_no") + margin}), output_field=models.BooleanField(null=True)
    )


class ClaimQuerySet(models.QuerySet):
    def with_effective_verdict(self, margin: float | None = None):
        """Annotate `effective_accepted` (bool or None) and `decided_by` ("reviewer"/"labeler"/None) in SQL.

        The labeler's verdict follows its iteration's margin, or `margin` where given (a "what if")."""
        decisive = Review.objects.decisive().filter(claim=OuterRef("pk")).order_by("-created_at", "-pk")
        verdict = Verdict.objects.filter(claim=OuterRef("pk"), labeler=OuterRef("response__iteration__labeler"))
        rule = accepted_under(OuterRef("response__iteration__margin") if margin is None else margin)
        return self.annotate(
            review_decision=Subquery(decisive.values("decision")[:1]),
            labeler_accepted=Subquery(verdict.annotate(ok=rule).values("ok")[:1]),
            p_yes=Subquery(verdict.values("p_yes")[:1]),
            p_no=Subquery(verdict.values("p_no")[:1]),
        ).annotate(
            effective_accepted=Case(
                When(review_decision=Decision.CORRECT, then=Value(True)),
                When(review_decision=Decision.HALLUCINATED, then=Value(False)),
                default=F("labeler_accepted"),
                output_field=models.BooleanField(null=True),
            ),
            decided_by=Case(
                When(review_decision__isnull=False, then=Value("reviewer")),
                When(labeler_accepted__isnull=False, then=Value("labeler")),
                default=None,
                output_field=models.CharField(null=True),
            ),
        )


class Claim(models.Model):
    """An atomic fact of a response and the polar question the labeler answers about it."""

    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="claims")
    index = models.PositiveIntegerField()
    text = models.TextField(
        validators=[MaxLengthValidator(limits.ANSWER)],
        help_text="Model output (divide step): untrusted text, always escaped",
    )
    question = models.TextField(
        validators=[MaxLengthValidator(limits.ANSWER)],
        help_text="Model output (divide step): the yes/no question asked of the labeler",
    )
    divided_by = models.CharField(
        max_length=500, help_text="What divided the answer into this claim: 'rule' or 'rlaifv:<divide model>'"
    )

    objects = ClaimQuerySet.as_manager()

    class Meta:
        ordering = ["response_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["response", "index"], name="claim_unique_index"),
        ]

    def __str__(self):
        return self.text[:80]

    def effective_accepted(self) -> bool | None:
        """The latest decisive review wins; else the labeler's verdict; None when neither exists."""
        iteration = self.response.iteration
        rows = with_labeler_verdict(Claim.objects.filter(pk=self.pk), iteration.labeler, iteration.margin)
        return effective_verdicts(rows.values_list(*VERDICT_ROW))[self.pk].accepted


class Verdict(models.Model):
    """The labeler's answer to a claim's question: the first-token mass on yes vs no."""

    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="verdicts")
    labeler = models.CharField(max_length=500)
    p_yes = models.FloatField(help_text="P(Yes)+P(yes) of the labeler's first token")
    p_no = models.FloatField(help_text="P(No)+P(no) of the labeler's first token")
    accepted = models.BooleanField(
        help_text="p_yes > p_no (RLAIF-V: no threshold); the verdict that counts follows the iteration's margin"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["claim", "labeler"], name="verdict_one_per_labeler"),
            models.CheckConstraint(
                condition=Q(p_yes__gte=0, p_yes__lte=1, p_no__gte=0, p_no__lte=1),
                name="verdict_probabilities",
            ),
            models.CheckConstraint(
                condition=Q(accepted=True, p_yes__gt=F("p_no")) | Q(accepted=False, p_yes__lte=F("p_no")),
                name="verdict_accepted_iff_yes_wins",
            ),
        ]
        indexes = [
            # The spot-check queue reads the most uncertain verdicts first.
            models.Index(Abs(F("p_yes") - F("p_no")), name="verdict_uncertainty_idx"),
        ]

    def __str__(self):
        return f"{'accepted' if self.accepted else 'rejected'} ({self.p_yes:.2f}/{self.p_no:.2f})"


class ReviewQuerySet(models.QuerySet):
    def standing(self):
        """Decisions still in force: neither an undo nor undone by one."""
        return self.filter(undoes__isnull=True, undone_by__isnull=True)

    def decisive(self):
        """Standing decisions that set a verdict (correct / hallucinated)."""
        return self.standing().filter(decision__in=DECISIVE)

    def update(self, **kwargs):
        raise TypeError("reviews are append-only")

    def delete(self):
        raise TypeError("reviews are append-only")


class Decision(models.TextChoices):
    CORRECT = "correct", "correct"
    HALLUCINATED = "hallucinated", "hallucinated"
    UNSURE = "unsure", "unsure"
    UNDO = "undo", "undo"


# What a reviewer presses on a claim, and those of them that set its verdict. An undo is appended by the
# review service only, naming the decision it takes back.
CLAIM_DECISIONS = (Decision.CORRECT, Decision.HALLUCINATED, Decision.UNSURE)
DECISIVE = (Decision.CORRECT, Decision.HALLUCINATED)


class Review(models.Model):
    """A human's decision on a claim. Append-only: a new decision is a new row; none is ever changed.

    Taking a decision back appends an undo naming it, so the history keeps both and the claim's effective
    verdict returns to what it was before that decision.
    """

    Decision = Decision

    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    decision = models.CharField(max_length=20, choices=Decision.choices)
    note = models.TextField(validators=[MaxLengthValidator(limits.NOTE)], blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The claim's iteration, stored: counting one reviewer's work in an iteration then reads an index instead
    # of joining each of their reviews to its claim and answer.
    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="+", editable=False)
    undoes = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="undone_by",
        editable=False,
        help_text="For an undo: the reviewer's own decision on the same claim that it takes back (once)",
    )
    audit = models.ForeignKey(
        "AuditSample",
        null=True,
        blank=True,
        on_delete=models.RESTRICT,
        related_name="reviews",
        editable=False,
        help_text="The audit sample whose page it was made on; only these reviews estimate the labeler's error "
        "rate (a queue that serves uncertain claims first would bias it)",
    )

    objects = ReviewQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(decision__in=Decision.values), name="review_decision_valid"),
            # "an undo names a decision of the same reviewer on the same claim" spans rows: enforced by
            # triggers, see migration 0010_review_undo.
            models.CheckConstraint(
                condition=Q(decision=Decision.UNDO, undoes__isnull=False)
                | (~Q(decision=Decision.UNDO) & Q(undoes__isnull=True)),
                name="review_undo_names_a_review",
            ),
        ]
        indexes = [
            models.Index(fields=["claim", "-created_at"], name="review_latest_idx"),
            # With the review and what it undoes carried in the index (PostgreSQL), the spot-check queue's count of
            # a reviewer's standing decisions reads the index alone: reading the rows took 11 ms at 5k reviews.
            models.Index(
                fields=["reviewer", "iteration", "claim"],
                include=["id", "undoes"],
                name="review_reviewer_iteration_idx",
            ),
        ]

    def __str__(self):
        return f"{self.decision} by {self.reviewer_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise TypeError("reviews are append-only")
        if self.iteration_id is None:
            self.iteration_id = self.claim.response.iteration_id
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("reviews are append-only")


class PreferencePair(models.Model):
    """A (chosen, rejected) pair of responses to one instruction, as DPO trains on it."""

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="pairs")
    instruction = models.ForeignKey(Instruction, on_delete=models.PROTECT, related_name="pairs")
    chosen = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    rejected = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    score_gap = models.PositiveIntegerField()
    excluded = models.BooleanField(default=False, help_text="Excluded by a reviewer: left out of training")
    excluded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    origin = models.JSONField(
        null=True,
        blank=True,
        help_text="An imported pair's RLAIF-V row metadata (ds_name, idx, origin_dataset, origin_split, image_path), "
        "exported again unchanged; empty for pairs made here",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(chosen=F("rejected")), name="pair_chosen_not_rejected"),
            models.CheckConstraint(condition=Q(score_gap__gte=1), name="pair_score_gap_positive"),
            models.UniqueConstraint(fields=["iteration", "chosen", "rejected"], name="pair_unique"),
            # "chosen and rejected answer the pair's instruction in the pair's iteration" spans tables:
            # enforced by triggers, see migration 0002_pair_same_instruction.
        ]
        indexes = [
            # The pair list's keyset pages: (score_gap, id) row comparisons, read forwards or backwards,
            # with or without the excluded filter.
            models.Index(fields=["iteration", "excluded", "score_gap", "id"], name="pair_list_idx"),
            models.Index(fields=["iteration", "score_gap", "id"], name="pair_gap_idx"),
            models.Index(fields=["instruction"], name="pair_instruction_idx"),
        ]

    def __str__(self):
        return f"pair {self.pk}: {self.chosen_id} ≻ {self.rejected_id}"


class WithdrawnPair(models.Model):
    """A pair a review's rebuild removed, kept so that the same two answers paired again (after an undo, or
    another review) get their old row back: its number, the reviewer's exclusion, its origin."""

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="+")
    chosen = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    rejected = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    pair_id = models.BigIntegerField(unique=True, help_text="The id the pair had, and gets back")
    excluded = models.BooleanField(default=False)
    excluded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    origin = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["iteration", "chosen", "rejected"], name="withdrawn_pair_unique"),
        ]

    def __str__(self):
        return f"withdrawn pair {self.pair_id}: {self.chosen_id} ≻ {self.rejected_id}"


class IterationCounts(models.Model):
    """The dashboard's counts of one iteration, kept up to date by every writer
    (webapp/iterations/counts.py) rather than counted on each request."""

    iteration = models.OneToOneField(Iteration, primary_key=True, on_delete=models.CASCADE, related_name="counts")
    responses = models.PositiveIntegerField(default=0)
    scored = models.PositiveIntegerField(default=0, help_text="Answers with a score (after combine)")
    rejected = models.PositiveIntegerField(default=0, help_text="Rejected claims of the scored answers")
    claims = models.PositiveIntegerField(default=0)
    pairs = models.PositiveIntegerField(default=0)
    excluded = models.PositiveIntegerField(default=0, help_text="Pairs a reviewer excluded")
    agree = models.PositiveIntegerField(default=0, help_text="Decided claims where the labeler agrees")
    decided = models.PositiveIntegerField(default=0, help_text="Claims a reviewer decided that the labeler judged")
    scores = models.JSONField(default=dict, blank=True, help_text="Score → answers with that score")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(scored__lte=F("responses")), name="counts_scored_le_responses"),
            models.CheckConstraint(condition=Q(excluded__lte=F("pairs")), name="counts_excluded_le_pairs"),
            models.CheckConstraint(condition=Q(agree__lte=F("decided")), name="counts_agree_le_decided"),
        ]

    def __str__(self):
        return f"counts of iteration {self.iteration_id}"


class AuditDesign(models.TextChoices):
    UNIFORM = "uniform", "uniform"
    STRATIFIED = "stratified", "stratified by p_yes"


class AuditSample(models.Model):
    """Claims of an iteration drawn at random for reviewers to audit (labeling.audit), so the labeler's error
    rate over the whole iteration is estimated without bias. The latest sample of an iteration is the one
    its audit page serves."""

    Design = AuditDesign

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="audit_samples")
    design = models.CharField(max_length=20, choices=AuditDesign.choices)
    seed = models.BigIntegerField(help_text="The random draw's seed: the same claims drawn again from it")
    populations = models.JSONField(
        help_text="Claims in each band of p_yes when drawn (labeling.audit.STRATUM_EDGES); uniform: [all claims]"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(design__in=AuditDesign.values), name="audit_design_valid")]

    def __str__(self):
        return f"{self.get_design_display()} audit of iteration {self.iteration_id}"


class AuditItem(models.Model):
    """One drawn claim, its band of p_yes and its place in the serving order."""

    sample = models.ForeignKey(AuditSample, on_delete=models.CASCADE, related_name="items")
    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="+")
    stratum = models.PositiveSmallIntegerField()
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["sample", "position"]
        constraints = [
            models.UniqueConstraint(fields=["sample", "claim"], name="audit_item_claim_once"),
            models.UniqueConstraint(fields=["sample", "position"], name="audit_item_position_once"),
        ]

    def __str__(self):
        return f"claim {self.claim_id}, #{self.position} of audit {self.sample_id}"


class JobKind(models.TextChoices):
    GENERATE = "generate"
    # The starting policy evaluated as `evaluate` does its checkpoint, beside the generate stage, so the gate
    # already shows where the loop starts (the "iteration 0" point); skipped when an earlier evaluation of that
    # policy, measured the same way, is there to copy (webapp/iterations/baseline.py).
    BASELINE = "baseline"
    DIVIDE = "divide"
    LABEL = "label"
    COMBINE = "combine"
    TRAIN = "train"
    EVALUATE = "evaluate"


# The iteration status in which jobs of each kind run.
STAGE_OF_JOB = {
    JobKind.GENERATE: IterationStatus.GENERATING,
    JobKind.DIVIDE: IterationStatus.DIVIDING,
    JobKind.LABEL: IterationStatus.LABELING,
    JobKind.COMBINE: IterationStatus.COMBINING,
    JobKind.TRAIN: IterationStatus.TRAINING,
    JobKind.EVALUATE: IterationStatus.EVALUATING,
    JobKind.BASELINE: IterationStatus.GENERATING,
}


class JobState(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Job(models.Model):
    """One Celery task over a chunk of an iteration; the iteration's progress is the sum of its jobs."""

    Kind = JobKind
    State = JobState

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=JobKind.choices)
    chunk = models.PositiveIntegerField(default=0)
    instruction_ids = models.JSONField(default=list, blank=True, help_text="The chunk: instruction primary keys")
    celery_task_id = models.CharField(max_length=255, blank=True, help_text="The task last sent for this job")
    worker = models.CharField(max_length=255, blank=True, help_text="The Celery worker that ran it last")
    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.PENDING)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    error = models.TextField(validators=[MaxLengthValidator(limits.ERROR)], blank=True)
    log = models.JSONField(default=list, blank=True, help_text="Progress records, e.g. training loss per step")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    working_at = models.DateTimeField(
        null=True, blank=True, help_text="When this run first reported work done: its rate leaves out the time before"
    )
    working_from = models.PositiveIntegerField(default=0, help_text="Items done when this run first reported")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["iteration", "kind", "chunk"], name="job_unique_chunk"),
            models.CheckConstraint(condition=Q(kind__in=JobKind.values), name="job_kind_valid"),
            models.CheckConstraint(condition=Q(state__in=JobState.values), name="job_state_valid"),
            models.CheckConstraint(condition=Q(done__lte=F("total")), name="job_done_le_total"),
        ]
        indexes = [models.Index(fields=["iteration", "kind", "state"], name="job_progress_idx")]

    def __str__(self):
        return f"{self.kind} #{self.chunk} of iteration {self.iteration_id}"

    @property
    def stage(self) -> str:
        """The iteration status this job runs in: once the iteration leaves it, the job's rows are unwanted."""
        return STAGE_OF_JOB[self.kind]

    def start(self, total: int) -> None:
        """Running (again). `done` is kept, at most `total`: see `progress`."""
        now = timezone.now()
        Job.objects.filter(pk=self.pk).update(
            state=JobState.RUNNING,
            total=total,
            done=Least(F("done"), Value(total)),
            started_at=now,
            heartbeat_at=now,
            working_at=None,
            error="",
            worker=self.worker,
        )
        self.total = total

    def progress(self, done: int) -> None:
        """Record progress; the heartbeat tells the watchdog this job's worker is alive.

        `done` only grows: it is the furthest the job has got. A chunk's rows are committed all at once, so a
        retried or resumed job works through its chunk again from its last commit; meanwhile the page keeps
        showing how far it got before, instead of a bar that jumps back, until the new run passes that point.

        The first report of a run marks when its work began (`working_at`, with how far it was then): loading
        models before it is left out of the running job's rate, which would otherwise say "18 min" for a
        training whose first step waited for the model.
        """
        now, shown = timezone.now(), Greatest(F("done"), Least(Value(done), F("total")))
        first = Q(working_at__isnull=True) & Q(done__lt=Value(done))
        Job.objects.filter(pk=self.pk).update(
            done=shown,
            heartbeat_at=now,
            working_at=Case(When(first, then=Value(now)), default=F("working_at")),
            working_from=Case(
                When(first, then=shown), default=F("working_from"), output_field=models.PositiveIntegerField()
            ),
        )

    def succeed(self) -> None:
        now = timezone.now()
        Job.objects.filter(pk=self.pk).update(
            state=JobState.SUCCEEDED, done=F("total"), heartbeat_at=now, finished_at=now, error=""
        )

    def fail(self, error: str) -> None:
        now = timezone.now()
        Job.objects.filter(pk=self.pk).update(
            state=JobState.FAILED, error=error[: limits.ERROR], heartbeat_at=now, finished_at=now
        )


@dataclass(frozen=True)
class EffectiveVerdict:
    """A claim's effective verdict, as `with_effective_verdict` annotates it."""

    response_id: int
    accepted: bool | None
    decided_by: str | None  # "reviewer", "labeler" or None
    p_yes: float | None


def with_labeler_verdict(claims, labeler: str, margin: float):
    """Claims with the labeler's verdict under `margin` (its iteration's) joined in, as `labeler_accepted` and
    `p_yes` (None where it has none)."""
    verdict = FilteredRelation("verdicts", condition=Q(verdicts__labeler=labeler))
    return claims.annotate(labeler_verdict=verdict).annotate(
        labeler_accepted=accepted_under(margin, "labeler_verdict__"), p_yes=F("labeler_verdict__p_yes")
    )


def effective_verdicts(claims, decisions=None) -> dict[int, EffectiveVerdict]:
    """Each claim's effective verdict; claims are (id, response id, labeler_accepted, p_yes) rows.

    The rule of `with_effective_verdict`, for pages and reviews that touch one pair or one instruction: there,
    compiling the annotated query costs more than running it. `decisions`, REVIEW_ROW rows in the order they
    were made, spares the query for callers that already hold the claims' reviews.
    """
    claims = list(claims)
    if decisions is None:
        decisions = Review.objects.filter(claim__in=[row[0] for row in claims]).order_by("created_at", "pk")
        decisions = decisions.values_list(*REVIEW_ROW)
    decided = standing_decisions(decisions)
    verdicts = {}
    for claim, response, accepted, p_yes in claims:
        if claim in decided:
            verdicts[claim] = EffectiveVerdict(response, decided[claim] == Decision.CORRECT, "reviewer", p_yes)
        else:
            verdicts[claim] = EffectiveVerdict(response, accepted, "labeler" if accepted is not None else None, p_yes)
    return verdicts


def standing_decisions(reviews) -> dict[int, str]:
    """claim id → its latest decisive review's decision, skipping undone ones; `reviews`: REVIEW_ROW rows in
    the order they were made."""
    reviews = list(reviews)
    undone = {undoes for *_, undoes in reviews if undoes is not None}
    # Later decisions overwrite earlier ones: the latest standing decisive review wins.
    return {claim: decision for pk, claim, decision, _ in reviews if decision in DECISIVE and pk not in undone}


REVIEW_ROW = ("pk", "claim", "decision", "undoes")  # what standing_decisions reads of a review
VERDICT_ROW = ("pk", "response", "labeler_accepted", "p_yes")  # what effective_verdicts reads of a claim


def response_scores(responses, margin: float | None = None, repeats: bool = False):
    """score = −(effective rejections) for each response, computed in one query (under `margin`: a "what if"); with
    `repeats` (config "reject_repeats"), each claim repeating an earlier one of its answer counts as rejected too."""
    rejected = (
        Claim.objects.filter(response=OuterRef("pk"))
        .with_effective_verdict(margin)
        .filter(effective_accepted=False)
        .values("response")
        .annotate(n=models.Count("pk"))
        .values("n")
    )
    n_rejected = Coalesce(Subquery(rejected[:1]), 0)
    return responses.annotate(n_rejected=n_rejected + F("repeated_claims") if repeats else n_rejected)


class ImportState(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class InstructionImport(models.Model):
    """Instructions uploaded in the browser (a JSONL and a zip of its images), imported by a CPU worker.

    The two files wait in storage until the import succeeds or fails for good, then are deleted.
    """

    State = ImportState

    jsonl = models.FileField(upload_to="imports/", help_text="The uploaded JSONL, deleted once imported")
    images = models.FileField(upload_to="imports/", help_text="The uploaded zip of images, deleted once imported")
    jsonl_name = models.CharField(max_length=255, help_text="The JSONL's name on the uploader's machine")
    images_name = models.CharField(max_length=255, help_text="The zip's name on the uploader's machine")
    source = models.CharField(max_length=100, default="user", help_text="For lines that name no source")
    state = models.CharField(max_length=20, choices=ImportState.choices, default=ImportState.PENDING)
    phase = models.CharField(max_length=20, blank=True, help_text="unpacking, checking or writing, while it runs")
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0, help_text="Lines of the JSONL; done counts those checked")
    created = models.PositiveIntegerField(default=0, help_text="Instructions it created")
    skipped = models.PositiveIntegerField(default=0, help_text="Instructions that were there already")
    error = models.TextField(
        validators=[MaxLengthValidator(limits.ERROR)], blank=True, help_text="Why it failed: the line or zip member"
    )
    worker = models.CharField(max_length=255, blank=True, help_text="The Celery worker that ran it last")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    uploaded_at = models.DateTimeField(auto_now_add=True)
    resends = models.PositiveIntegerField(
        db_default=0, help_text="How often the watchdog sent it again (IMPORT_MAX_RESENDS, then it fails)"
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Its last sign of life: sent, started, or its worker's progress or heartbeat"
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=ImportState.values), name="import_state_valid"),
            models.CheckConstraint(condition=Q(done__lte=F("total")), name="import_done_le_total"),
        ]

    def __str__(self):
        return f"Import {self.pk}"

    @property
    def percent(self) -> int:
        if self.state == ImportState.SUCCEEDED:
            return 100
        return int(100 * self.done / self.total) if self.total else 0


class AuditAction(models.TextChoices):
    """What a person (or a command) did; the label reads after the actor's name on the iteration page."""

    CREATE = "create", "created the iteration"
    EDIT = "edit", "changed the draft's settings"
    LAUNCH = "launch", "launched"
    APPROVE = "approve", "approved the review gate (training)"
    CANCEL = "cancel", "cancelled"
    RESUME = "resume", "resumed"
    DELETE = "delete", "deleted the iteration"
    EXPORT = "export", "downloaded the pairs"
    EXCLUDE = "exclude", "excluded a pair from training"
    INCLUDE = "include", "included a pair in training again"
    UPLOAD = "upload", "uploaded instructions to import"
    IMPORT = "import", "imported instructions"
    IMPORT_RLAIFV = "import_rlaifv", "imported an RLAIF-V dataset"
    ADD_USER = "add_user", "added a user"
    CHANGE_USER = "change_user", "changed a user"
    DELETE_USER = "delete_user", "deleted a user"
    ADD_GROUP = "add_group", "added a group"
    CHANGE_GROUP = "change_group", "changed a group"
    DELETE_GROUP = "delete_group", "deleted a group"
    MARGIN = "margin", "applied a decision margin to the labeler's verdicts"
    DRAW_AUDIT = "draw_audit", "drew an audit sample of claims"
    # Any other change made in the admin (webapp/accounts/admin_trail.py): what, in details.
    ADMIN_ADD = "admin_add", "added in the admin"
    ADMIN_CHANGE = "admin_change", "changed in the admin"
    ADMIN_DELETE = "admin_delete", "deleted in the admin"


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("audit events are append-only")

    def delete(self):
        raise TypeError("audit events are append-only")


class AuditEvent(models.Model):
    """One state-changing action: who, when, from where, what, on what. Append-only, like `Review`: the model
    refuses update and delete, and so does a database trigger (migration 0014_audit_event).

    The object is named in words and the iteration by its number, not by foreign keys: the trail outlives
    what it names, and deleting that never has to touch (update) the trail.
    """

    Action = AuditAction

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The signed-in user; empty for a command run on the server",
    )
    actor = models.CharField(max_length=200, help_text="The user's name then, or 'command line (OS user)'")
    address = models.GenericIPAddressField(
        null=True, blank=True, help_text="The client's address (X-Forwarded-For only as FORWARDED_FOR_PROXIES allows)"
    )
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    iteration = models.PositiveIntegerField(null=True, blank=True, help_text="The iteration's number, if any")
    target = models.CharField(max_length=300, blank=True, help_text="What it concerns, e.g. 'pair 17', 'user alice'")
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(action__in=AuditAction.values), name="auditevent_action_valid"),
        ]
        indexes = [
            # The iteration page's last events, and the admin's list (newest first, by date).
            models.Index(fields=["iteration", "-created_at"], name="auditevent_iteration_idx"),
            models.Index(fields=["-created_at"], name="auditevent_created_idx"),
        ]

    def __str__(self):
        return f"{self.actor} {self.get_action_display()} {self.target}".strip()

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise TypeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("audit events are append-only")

    @property
    def details_text(self) -> str:
        """The details in a line: `key: value, …`."""
        return ", ".join(f"{key}: {value}" for key, value in self.details.items())
