import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from webapp.accounts.permissions import REVIEWER_GROUP


class Command(BaseCommand):
    help = "Create (or reset) the demo login: a staff reviewer with a fresh random password, printed once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")

    def handle(self, *args, username, **options):
        user, created = get_user_model().objects.get_or_create(username=username)
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.is_staff = user.is_superuser = True
        user.save()
        reviewers, _ = Group.objects.get_or_create(name=REVIEWER_GROUP)
        user.groups.add(reviewers)
        again = "" if created else " (a new password: the earlier one no longer works)"
        self.stdout.write(f"demo login: username {username}  password {password}{again}")
