"""Django admin: every model browsable; reviews and verdicts are read-only records."""

from django.contrib import admin

from webapp.models import Claim, Instruction, Iteration, Job, PreferencePair, Response, Review, Verdict


@admin.register(Instruction)
class InstructionAdmin(admin.ModelAdmin):
    list_display = ["id", "question", "source", "split", "width", "height", "created_at"]
    list_filter = ["source", "split"]
    search_fields = ["question", "image_sha256"]
    # Images come in through import_instructions / import_rlaifv, which validate them (webapp/images.py) and
    # store them by content; an admin upload would skip both, so the image is not editable here.
    readonly_fields = ["image", "image_sha256", "width", "height", "objects_present", "created_at"]

    def has_add_permission(self, request):
        return False


@admin.register(Iteration)
class IterationAdmin(admin.ModelAdmin):
    list_display = ["number", "status", "engine", "policy", "labeler", "checkpoint", "created_at"]
    list_filter = ["status", "engine"]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "iteration", "instruction", "seed", "status", "score"]
    list_filter = ["iteration", "status"]
    raw_id_fields = ["instruction"]
    list_select_related = ["iteration", "instruction"]


@admin.register(Claim)
class ClaimAdmin(admin.ModelAdmin):
    list_display = ["id", "response", "index", "text", "divided_by"]
    raw_id_fields = ["response"]


@admin.register(Verdict)
class VerdictAdmin(admin.ModelAdmin):
    list_display = ["id", "claim", "labeler", "p_yes", "p_no", "accepted"]
    raw_id_fields = ["claim"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["id", "claim", "reviewer", "decision", "created_at"]
    list_filter = ["decision"]
    raw_id_fields = ["claim"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PreferencePair)
class PreferencePairAdmin(admin.ModelAdmin):
    list_display = ["id", "iteration", "instruction", "chosen", "rejected", "score_gap", "excluded"]
    list_filter = ["iteration", "excluded"]
    raw_id_fields = ["instruction", "chosen", "rejected"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "iteration", "kind", "chunk", "state", "done", "total", "started_at", "finished_at"]
    list_filter = ["kind", "state"]
