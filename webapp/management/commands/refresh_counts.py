"""Recount the dashboard's per-iteration counts from the data (webapp/iterations/counts.py).

Every writer keeps them up to date, and an iteration without counts is counted on its first dashboard view;
this fills them ahead of that for iterations made before counts were kept, or by hand-written SQL (bench/web.py
fills tables with COPY), and repairs them should they ever drift.
"""

from django.core.management.base import BaseCommand, CommandError

from webapp.iterations import counts
from webapp.models import Iteration


class Command(BaseCommand):
    help = "Recount the dashboard's counts of every iteration (or of --iteration N) from its data."

    def add_arguments(self, parser):
        parser.add_argument("--iteration", type=int, help="only this iteration's number")

    def handle(self, *args, iteration, **options):
        iterations = Iteration.objects.order_by("number")
        if iteration is not None:
            iterations = iterations.filter(number=iteration)
            if not iterations.exists():
                raise CommandError(f"there is no iteration {iteration}")
        for chosen in iterations:
            row = counts.refresh(chosen)
            self.stdout.write(f"{chosen}: {row.responses} answers, {row.claims} claims, {row.pairs} pairs")
