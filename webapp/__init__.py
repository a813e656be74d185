"""RLAIF-V Studio's Django project and app: the only package that knows about the database and Celery."""

from webapp.celery import app as celery_app

__all__ = ("celery_app",)
