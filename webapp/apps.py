from django.apps import AppConfig


class WebappConfig(AppConfig):
    name = "webapp"
    verbose_name = "RLAIF-V Studio"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from webapp.accounts.login_events import connect

        connect()
