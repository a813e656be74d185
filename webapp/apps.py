from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class WebappConfig(AppConfig):
    name = "webapp"
    verbose_name = "RLAIF-V Studio"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from webapp.accounts import admin_trail, login_events

        login_events.connect()
        admin_trail.connect()


class StudioAdminConfig(admin_apps.AdminConfig):
    """The admin, with the project's site as its default (webapp/admin_site.py)."""

    default = False  # not this module's app: named in INSTALLED_APPS by its path
    default_site = "webapp.admin_site.StudioAdminSite"
