"""The Celery app. Workers: `celery -A webapp worker -Q gpu` (concurrency 1; a group of N GPUs also `-Q gpu-xN`,
which Celery creates on first use: webapp.iterations.dispatch) and `-Q cpu`."""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("webapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = tuple(Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ("cpu", "gpu"))
app.conf.task_default_exchange = "cpu"
app.conf.task_default_routing_key = "cpu"
app.autodiscover_tasks()
