"""Django admin: every model browsable; what the pipeline or the review pages write is read-only here.

Reviews are made only on the review pages (`webapp.review.service.record_review` re-scores the answer and rebuilds the
pairs with them), and every iteration status changes only through the lifecycle: the admin launches,
approves, cancels and resumes iterations through the same door as the staff pages (`webapp.iterations.actions`).
A draft's edits and an iteration's deletion go on the audit trail, which is browsable here and read-only, and so
does every other change made here (`webapp.accounts.admin_trail`; the bulk delete: webapp/admin_site.py). An
instruction is read-only once it has answers: its question is what they answered.
"""

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count
from django.http import Http404
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from webapp.accounts import audit
from webapp.iterations.actions import ACTIONS, LABELS, buttons, run_action
from webapp.iterations.forms import DraftForm, IterationForm
from webapp.models import (
    AuditAction,
    AuditEvent,
    Claim,
    Instruction,
    Iteration,
    IterationStatus,
    Job,
    PreferencePair,
    Response,
    Review,
    Verdict,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows only the pipeline or the review pages write: browsable here, never added, changed or deleted.

    Deleting an iteration that has such rows is refused too, since the admin asks each related model's admin.
    """

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Instruction)
class InstructionAdmin(admin.ModelAdmin):
    list_display = ["id", "question", "source", "split", "width", "height", "created_at"]
    list_filter = ["source", "split"]
    search_fields = ["question", "image_sha256"]
    # Images come in through import_instructions / import_rlaifv, which validate them (webapp/transfer/images.py) and
    # store them by content; an admin upload would skip both, so the image is not editable here.
    readonly_fields = ["image", "image_sha256", "width", "height", "objects_present", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        """Not once it has answers or pairs: they answered this question about this image."""
        return super().has_change_permission(request, obj) and not (obj is not None and answered(obj))

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj is not None and answered(obj))


def answered(instruction: Instruction) -> bool:
    return instruction.responses.exists() or instruction.pairs.exists()


def lifecycle_action(action: str):
    """The iteration list's bulk action for `action`: each selected iteration goes through the lifecycle."""

    def run(modeladmin, request, queryset):
        for iteration in queryset.order_by("number"):
            run_action(request, iteration, action)

    run.__name__ = action
    return admin.action(description=LABELS[action], permissions=["change"])(run)


@admin.register(Iteration)
class IterationAdmin(admin.ModelAdmin):
    """Created as a draft by the staff page's form; its models and config change only while it is a draft."""

    list_display = ["number", "status", "engine", "policy", "labeler", "checkpoint", "created_at"]
    list_filter = ["status", "engine"]
    actions = [lifecycle_action(action) for action in ACTIONS]
    form = DraftForm
    add_form = IterationForm
    add_fieldsets = [
        (None, {"fields": ["source", "split", "policy", "labeler", "splitter", "engine"]}),
        ("Sampling, pairing and DPO", {"fields": [*IterationForm.CONFIG_FIELDS, "other_settings"]}),
    ]
    # What the lifecycle and the workers write: never a form field, so a save cannot write a stale copy back.
    lifecycle_fields = ["number", "status", "stopped_stage", "error", "checkpoint", "metrics", "jobs"]
    fieldsets = [
        (None, {"fields": lifecycle_fields}),
        (
            "Models and settings",
            {"fields": [*DraftForm.Meta.fields, "instruction_count", "created_by", "created_at", "updated_at"]},
        ),
    ]

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        fixed = [*self.lifecycle_fields, "instruction_count", "created_by", "created_at", "updated_at"]
        return fixed if obj.status == IterationStatus.DRAFT else [*fixed, *DraftForm.Meta.fields]

    def save_form(self, request, form, change):
        if not change:  # the staff page's form: instructions by source and split, a draft, via create_iteration
            return form.save(request.user)
        return super().save_form(request, form, change)

    def save_model(self, request, obj, form, change):
        """A new iteration is saved already; a draft's edits are written only while it is still a draft, and put
        on the audit trail (old and new values) in the admin's transaction."""
        if not change or not form.changed_data:
            return
        fields = {name: form.cleaned_data[name] for name in form.changed_data}
        if not Iteration.objects.filter(pk=obj.pk, status=IterationStatus.DRAFT).update(
            updated_at=timezone.now(), **fields
        ):
            self.message_user(request, f"{obj} was launched meanwhile: its settings were not changed.", "error")
            return
        changes = {name: [form.initial.get(name), value] for name, value in fields.items()}
        audit.record(AuditAction.EDIT, iteration=obj, target=str(obj), changes=changes)

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit.record(AuditAction.DELETE, iteration=obj, target=str(obj), status=obj.status)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for iteration in queryset:
                audit.record(AuditAction.DELETE, iteration=iteration, target=str(iteration), status=iteration.status)
            super().delete_queryset(request, queryset)

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        iteration = self.get_object(request, unquote(object_id))
        if iteration is not None:
            draft = iteration.status == IterationStatus.DRAFT
            may_act = self.has_change_permission(request, iteration)
            extra_context = (extra_context or {}) | {
                "lifecycle_actions": buttons(iteration) if may_act else [],
                "show_save": draft,
                "show_save_and_continue": draft,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        view = self.admin_site.admin_view(require_POST(self.lifecycle_view))
        # Before the admin's own patterns, whose `<object_id>/` catch-all would take this path.
        return [path("<path:object_id>/lifecycle/<str:action>/", view, name="webapp_iteration_lifecycle")] + (
            super().get_urls()
        )

    def lifecycle_view(self, request, object_id, action):
        """A button of the change page: one action on this iteration, answered with the staff pages' message."""
        iteration = self.get_object(request, unquote(object_id))
        if iteration is None:
            raise Http404("no such iteration")
        if action not in ACTIONS or not self.has_change_permission(request, iteration):
            raise PermissionDenied
        run_action(request, iteration, action)
        return redirect("admin:webapp_iteration_change", iteration.pk)

    @admin.display(description="instructions")
    def instruction_count(self, obj):
        return obj.instructions.count()

    @admin.display(description="jobs")
    def jobs(self, obj):
        counts = Job.objects.filter(iteration=obj).values("kind", "state").annotate(n=Count("id"))
        summary = ", ".join(f"{c['kind']} {c['state']}: {c['n']}" for c in counts.order_by("kind", "state"))
        url = reverse("admin:webapp_job_changelist") + f"?iteration__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, summary) if summary else "none yet"


@admin.register(Response)
class ResponseAdmin(ReadOnlyAdmin):
    list_display = ["id", "iteration", "instruction", "seed", "status", "score"]
    list_filter = ["iteration", "status"]
    list_select_related = ["iteration", "instruction"]


@admin.register(Claim)
class ClaimAdmin(ReadOnlyAdmin):
    list_display = ["id", "response", "index", "text", "divided_by"]


@admin.register(Verdict)
class VerdictAdmin(ReadOnlyAdmin):
    list_display = ["id", "claim", "labeler", "p_yes", "p_no", "accepted"]


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    """Reviews are made on the review pages, which re-score the answer and rebuild its pairs with them."""

    list_display = ["id", "claim", "reviewer", "decision", "created_at"]
    list_filter = ["decision"]


@admin.register(PreferencePair)
class PreferencePairAdmin(ReadOnlyAdmin):
    """Pairs follow the effective verdicts; excluding one is done on the pair pages (`review.set_excluded`)."""

    list_display = ["id", "iteration", "instruction", "chosen", "rejected", "score_gap", "excluded"]
    list_filter = ["iteration", "excluded"]


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    """Jobs are created, run and stopped by the lifecycle and the workers."""

    list_display = ["id", "iteration", "kind", "chunk", "state", "done", "total", "started_at", "finished_at"]
    list_filter = ["kind", "state"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail: browsable, never added, changed or deleted here (nor anywhere: see the model)."""

    list_display = ["created_at", "actor", "action", "iteration", "target", "address"]
    list_filter = ["action", "user", "created_at"]
    search_fields = ["actor", "target"]
    date_hierarchy = "created_at"
