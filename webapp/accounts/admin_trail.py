"""Every change made in the admin goes on the audit trail, whatever the model (an instruction, a login log).

Django's admin writes a LogEntry for each object it adds, changes or deletes; each becomes an audit event too
(who, from where, the model, the object and the admin's own change message), in the admin's transaction. The
models whose changes have events of their own are left to those: iterations (webapp/admin.py records a draft's
old and new settings and a deletion) and users and groups (`login_events`, wherever they change). The admin
saves a single entry, which sends post_save, but writes a bulk deletion's entries with bulk_create, which sends
nothing: `audited` wraps the admin's bulk delete action to record those.
"""

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db import transaction
from django.db.models.signals import post_save

from webapp.accounts import audit
from webapp.models import AuditAction

RECORDED_ELSEWHERE = {("webapp", "iteration"), ("auth", "user"), ("auth", "group")}
ACTIONS = {ADDITION: AuditAction.ADMIN_ADD, CHANGE: AuditAction.ADMIN_CHANGE, DELETION: AuditAction.ADMIN_DELETE}


def record_entry(entry: LogEntry) -> None:
    """The audit event of one admin log entry, unless its model has events of its own."""
    kind = entry.content_type
    model = f"{kind.app_label}.{kind.model}" if kind else "unknown"
    if kind is not None and (kind.app_label, kind.model) in RECORDED_ELSEWHERE:
        return
    audit.record(
        ACTIONS[entry.action_flag],
        target=f"{model} {entry.object_id}: {entry.object_repr}",
        model=model,
        object_id=str(entry.object_id),
        change=entry.get_change_message(),
    )


def entry_saved(sender, instance, created, raw=False, **kwargs):
    if created and not raw:
        record_entry(instance)


def audited(action):
    """The admin's bulk delete `action`, its log entries on the trail: with more than one object Django writes
    them with bulk_create (no signal), so they are read back and recorded, in the deletion's transaction."""

    def run(modeladmin, request, queryset):
        last = LogEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        with transaction.atomic():
            response = action(modeladmin, request, queryset)
            entries = list(LogEntry.objects.filter(pk__gt=last, user_id=request.user.pk).select_related("content_type"))
            if len(entries) > 1:  # a single entry was saved one by one: entry_saved recorded it
                for entry in entries:
                    record_entry(entry)
        return response

    run.__name__ = action.__name__
    for name in ("short_description", "allowed_permissions"):
        if hasattr(action, name):
            setattr(run, name, getattr(action, name))
    return run


def connect() -> None:
    post_save.connect(entry_saved, sender=LogEntry, dispatch_uid="admin-entry-on-the-trail")
