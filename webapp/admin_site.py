"""The admin site itself (Django's default site, replaced through `webapp.apps.StudioAdminConfig`).

What it changes for every model: its bulk delete puts each deleted row on the audit trail (Django writes those
log entries without a signal: webapp/accounts/admin_trail.py), and its own password change checks the old
password as a login, so the lockout stops guessing it from a stolen session (webapp/accounts/logins.py).
"""

from django.contrib.admin import AdminSite
from django.contrib.admin.actions import delete_selected
from django.contrib.auth.views import PasswordChangeView
from django.urls import reverse

from webapp.accounts.admin_trail import audited
from webapp.accounts.logins import ThrottledPasswordChangeForm


class StudioAdminSite(AdminSite):
    def __init__(self, name="admin"):
        super().__init__(name)
        self.add_action(audited(delete_selected), "delete_selected")  # replaces Django's own

    def password_change(self, request, extra_context=None):
        """Django's view with the throttled form (AdminSite has no setting for the form)."""
        defaults = {
            "form_class": ThrottledPasswordChangeForm,
            "success_url": reverse("admin:password_change_done", current_app=self.name),
            "extra_context": {**self.each_context(request), **(extra_context or {})},
        }
        if self.password_change_template is not None:
            defaults["template_name"] = self.password_change_template
        request.current_app = self.name
        return PasswordChangeView.as_view(**defaults)(request)
