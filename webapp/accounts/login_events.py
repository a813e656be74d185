"""User and group changes on the audit trail, wherever they are made (the admin, createsuperuser, a shell): model
signals on User and Group save and delete, and on their group and permission memberships.

The actor is the request's user or the command line (`webapp.accounts.actors`). A save inside a transaction (the
admin's) commits with its event; one outside any (a command's) writes the event just after.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from webapp.accounts import audit
from webapp.models import AuditAction

IGNORED = {"id", "last_login"}  # a login saves last_login: not a change anyone made to the account
HIDDEN = {"password"}  # recorded as changed, never its hash


def name_of(obj) -> str:
    if isinstance(obj, Permission):
        return f"{obj.content_type.app_label}.{obj.codename}"
    if isinstance(obj, Group):
        return obj.name
    return obj.get_username()


def target_of(obj) -> str:
    return f"{'group' if isinstance(obj, Group) else 'user'} {name_of(obj)}"


def action_of(obj, user: str, group: str) -> str:
    return group if isinstance(obj, Group) else user


def remember_before(sender, instance, update_fields=None, **kwargs):
    """Read the row as it was, to record what this save changes."""
    fields = [f.attname for f in sender._meta.concrete_fields if f.attname not in IGNORED]
    if update_fields is not None:
        fields = [name for name in fields if name in update_fields]
    before = sender.objects.filter(pk=instance.pk).values(*fields).first() if instance.pk and fields else None
    instance.audit_before = before or {}


def saved(sender, instance, created, **kwargs):
    if created:
        flags = {} if isinstance(instance, Group) else {
            "is_active": instance.is_active, "is_staff": instance.is_staff, "is_superuser": instance.is_superuser
        }  # fmt: skip
        audit.record(action_of(instance, AuditAction.ADD_USER, AuditAction.ADD_GROUP), target=target_of(instance),
                     **flags)  # fmt: skip
        return
    before = getattr(instance, "audit_before", {})
    changes = {
        name: "changed" if name in HIDDEN else [old, getattr(instance, name)]
        for name, old in before.items()
        if old != getattr(instance, name)
    }
    if changes:
        audit.record(
            action_of(instance, AuditAction.CHANGE_USER, AuditAction.CHANGE_GROUP),
            target=target_of(instance),
            changes=changes,
        )


def deleted(sender, instance, **kwargs):
    audit.record(action_of(instance, AuditAction.DELETE_USER, AuditAction.DELETE_GROUP), target=target_of(instance))


def membership_changed(sender, instance, action, reverse, model, pk_set, field, **kwargs):
    """Groups or permissions added to or removed from a user or group, recorded on that user or group."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    verb = "added" if action == "post_add" else "removed"
    if reverse:  # group.user_set.add(user): `instance` is the group, `model` the users changed
        owners = (
            model.objects.filter(**{field: instance}) if action == "pre_clear" else model.objects.filter(pk__in=pk_set)
        )
        changes = {owner: [instance] for owner in owners}
    else:
        related = getattr(instance, field).all() if action == "pre_clear" else model.objects.filter(pk__in=pk_set)
        changes = {instance: list(related)}
    for owner, related in changes.items():
        if related:
            audit.record(
                action_of(owner, AuditAction.CHANGE_USER, AuditAction.CHANGE_GROUP),
                target=target_of(owner),
                **{field: {verb: sorted(name_of(obj) for obj in related)}},
            )


def connect() -> None:
    """Called once, from the app's ready()."""
    user = get_user_model()
    for model in (user, Group):
        pre_save.connect(remember_before, sender=model, dispatch_uid=f"audit-before-{model.__name__}")
        post_save.connect(saved, sender=model, dispatch_uid=f"audit-saved-{model.__name__}")
        post_delete.connect(deleted, sender=model, dispatch_uid=f"audit-deleted-{model.__name__}")
    for model, field in ((user, "groups"), (user, "user_permissions"), (Group, "permissions")):
        through = getattr(model, field).through

        def receiver(sender, field=field, **kwargs):
            membership_changed(sender, field=field, **kwargs)

        m2m_changed.connect(receiver, sender=through, weak=False, dispatch_uid=f"audit-{model.__name__}-{field}")
