"""Settings for the benchmarks: the test settings, on a dedicated PostgreSQL database.

The database is ``frameio_bench`` (override with ``FRAMEIO_BENCH_PGDATABASE``) on the same
server the tests use (127.0.0.1:5432 unless ``FRAMEIO_TEST_PGHOST``/``PGPORT`` say otherwise).
It is never the test database, so ``make test`` and the benchmarks cannot clobber each other.
"""

from __future__ import annotations

import os

from tests.support.settings import *  # noqa: F403
from tests.support.settings import FRAMEIO_OAUTH as _TEST_FRAMEIO_OAUTH
from tests.support.settings import PG_HOST, PG_PORT

BENCH_DB_NAME = os.environ.get("FRAMEIO_BENCH_PGDATABASE", "frameio_bench")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": BENCH_DB_NAME,
        "USER": os.environ.get("FRAMEIO_TEST_PGUSER", "postgres"),
        "HOST": PG_HOST,
        "PORT": PG_PORT,
    }
}

# DEBUG stays False (as in production): connection.queries is only filled inside
# CaptureQueriesContext, so timing loops pay no query-logging cost.
DEBUG = False

# Production-like logging: the tests turn frameio_oauth up to DEBUG, which would make every
# provider call build a LogRecord that nothing prints.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"frameio_oauth": {"level": "INFO"}},
}

# The scripts point TOKEN_URL at their local provider with override_settings.
FRAMEIO_OAUTH = dict(_TEST_FRAMEIO_OAUTH)
