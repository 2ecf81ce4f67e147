from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def report_ready(**kwargs: Any) -> None:
    """Tell example_project.run that the worker consumes from its broker: the file it waits
    for before it prints its banner."""
    ready_file = os.environ.get("EXAMPLE_CELERY_READY_FILE")
    if ready_file:
        Path(ready_file).write_text(str(os.getpid()))
