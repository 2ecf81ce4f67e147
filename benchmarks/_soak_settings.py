"""Settings for the soak benchmark's Celery processes (``celery beat`` and the workers).

``benchmarks.settings`` (the benchmark database, named by ``FRAMEIO_BENCH_PGDATABASE``, which
``soak.py`` sets to its own database) plus a real Celery configuration: a Redis database and
queues of the soak's own, the fan-out layout of docs/operations.md, and the app's beat entry
at the soak's interval. ``soak.py`` passes the run's values in ``FRAMEIO_SOAK_JSON``.
"""

from __future__ import annotations

import json
import os

from benchmarks.settings import *  # noqa: F403
from benchmarks.settings import DATABASES as _BENCH_DATABASES
from benchmarks.settings import FRAMEIO_OAUTH as _BENCH_FRAMEIO_OAUTH

SOAK = json.loads(os.environ["FRAMEIO_SOAK_JSON"])

DATABASES = {
    "default": {
        **_BENCH_DATABASES["default"],
        "OPTIONS": {"application_name": "frameio_soak"},
    }
}

FRAMEIO_OAUTH = {
    **_BENCH_FRAMEIO_OAUTH,
    "TOKEN_URL": SOAK["token_url"],
    "REFRESH_MARGIN": SOAK["margin"],
    "HTTP_TIMEOUT": 10,  # the default; the test settings shorten it
}

CELERY_BROKER_URL = SOAK["redis_url"]
CELERY_RESULT_BACKEND = SOAK["redis_url"]
# Celery's Django fixup closes the thread's database connections before and after every task
# whatever CONN_MAX_AGE says, so each refresh opens a connection of its own; with this set, it
# closes them only every Nth time (soak.py --db-reuse-max; 0 leaves Celery's default).
CELERY_DB_REUSE_MAX = SOAK["db_reuse_max"] or None
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = SOAK["default_queue"]
CELERY_TASK_ROUTES = {
    "frameio_oauth.tasks.refresh_token_if_due": {"queue": SOAK["refresh_queue"]},
    "frameio_oauth.tasks.refresh_due_token": {"queue": SOAK["refresh_queue"]},
}
CELERY_BEAT_SCHEDULE = {
    "frameio-oauth-refresh-due": {
        "task": "frameio_oauth.tasks.refresh_due_tokens",
        "schedule": float(SOAK["beat"]),
        # Each fanned-out task expires after one beat interval: the next tick enqueues every
        # row still due again (docs/operations.md).
        "kwargs": {"fanout": True, "expires": float(SOAK["beat"])},
    },
}
