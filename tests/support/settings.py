from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tests.support.services_probe import (
    PG_HOST,
    PG_PORT,
    REDIS_URL,
    postgres_available,
    redis_available,
)

_CHECKOUT = hashlib.sha256(str(Path(__file__).resolve().parents[2]).encode()).hexdigest()[:8]

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_celery_beat",
    "frameio_oauth",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.support.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
LOGIN_URL = "/accounts/login/"
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if postgres_available():
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            # Named after the checkout, so two checkouts on one server (a developer's and
            # CI's) never fight over one test database.
            "NAME": os.environ.get("FRAMEIO_TEST_PGDATABASE", f"frameio_oauth_{_CHECKOUT}"),
            "USER": os.environ.get("FRAMEIO_TEST_PGUSER", "postgres"),
            "HOST": PG_HOST,
            "PORT": PG_PORT,
            # Lets a test count the connections a server it started holds (tests/test_async.py).
            "OPTIONS": {"application_name": os.environ.get("FRAMEIO_TEST_PG_APPNAME", "tests")},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            "OPTIONS": {"transaction_mode": "IMMEDIATE"},
        }
    }

# A second alias onto the same test database, for the routing tests (tests/test_routing.py):
# a router sends tokens there, and each test can see which connection did what.
DATABASES["tokens"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}

# Two fixed keys: tests that need "an old key" put the second one first.
TEST_KEY = "G8ovZ3Q4mH8Q0Y3qk3dJ7u3k0M5w2m9zq6v0r1s2t3A="
OLD_TEST_KEY = "bGVnYWN5LWtleS0wMDAwMDAwMDAwMDAwMDAwMDAwMDA="

FRAMEIO_OAUTH = {
    "PROVIDER": "frameio",
    "CLIENT_ID": "test-client",
    "CLIENT_SECRET": "test-secret",
    "PKCE": True,
    "SCOPES": ["account.read", "offline"],
    "ENCRYPTION_KEYS": [TEST_KEY],
    "HTTP_TIMEOUT": 2,
}

# Subprocesses started by the tests (sweeps, workers) get the test's provider URLs this way.
if os.environ.get("FRAMEIO_TEST_OAUTH_JSON"):
    FRAMEIO_OAUTH.update(json.loads(os.environ["FRAMEIO_TEST_OAUTH_JSON"]))

# Tasks run eagerly unless a test starts a real worker (tests/test_celery.py); without Redis
# the broker URL is never dialled.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL if redis_available() else None
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
# A queue of this run's own: two checkouts testing at once share the Redis database, and on the
# default queue each one's worker took the other's tasks and ran them with its own settings.
CELERY_TASK_DEFAULT_QUEUE = f"frameio_oauth_tests_{_CHECKOUT}_{os.getpid()}"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"frameio_oauth": {"level": "DEBUG"}},
}
