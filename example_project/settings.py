"""Settings of the example site. Runs offline by default: SQLite, the local Frame.io stand-in
(frameio_oauth.standin) on :8001 playing Frame.io V4, and Celery on a broker that is just a
folder. Environment variables switch each part to the real thing (docs/example.md)."""

from __future__ import annotations

import os
from pathlib import Path

from frameio_oauth.crypto import generate_key
from frameio_oauth.standin import client_settings
from frameio_oauth.standin.config import mode_from_environ

BASE_DIR = Path(__file__).resolve().parent
VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR", BASE_DIR.parent / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _flag(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")


def _local_secret(name: str, make: object) -> str:
    """A per-checkout secret kept in var/ (never committed), made on first use."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(make())  # type: ignore[operator]
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = _flag("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _local_secret(
    "django-secret-key", lambda: generate_key() + generate_key()
)
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "frameio_oauth",
    "example_project",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(VAR_DIR / "example.sqlite3")),
        # SQLite ignores select_for_update; IMMEDIATE transactions take the write lock up
        # front, so the refresh rule still serialises web requests and the Celery worker.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The sign-in page the app ships: "Sign in with Frame.io" and the password form.
LOGIN_URL = "frameio_oauth:sign_in"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# Production hardening, on whenever DEBUG is off (`manage.py check --deploy` is clean then).
if not DEBUG:
    SECURE_SSL_REDIRECT = _flag("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- frameio_oauth ------------------------------------------------------------------------
# Where the local stand-in listens (example_project.run starts it there), and which Frame.io
# it plays: Frame.io V4 through Adobe IMS, or legacy Frame.io with FRAMEIO_STANDIN_LEGACY=1.
STANDIN_URL = os.environ.get("FRAMEIO_STANDIN_URL") or (
    f"http://127.0.0.1:{os.environ.get('FRAMEIO_STANDIN_PORT') or 8001}"
)
STANDIN_MODE = mode_from_environ(os.environ)
_keys = os.environ.get("FRAMEIO_OAUTH_ENCRYPTION_KEYS", "")
FRAMEIO_OAUTH: dict[str, object] = {
    "ENCRYPTION_KEYS": [k for k in _keys.split(",") if k]
    or [_local_secret("frameio-encryption-key", generate_key)],
    "ALLOW_SIGNUP": True,
}
if os.environ.get("FRAMEIO_CLIENT_ID"):
    # The real Frame.io: V4 through Adobe IMS, or "frameio" for the legacy server.
    FRAMEIO_OAUTH.update(
        PROVIDER=os.environ.get("FRAMEIO_PROVIDER", "adobe-ims"),
        CLIENT_ID=os.environ["FRAMEIO_CLIENT_ID"],
        REDIRECT_URI=os.environ.get("FRAMEIO_REDIRECT_URI") or None,
    )
    if os.environ.get("FRAMEIO_CLIENT_SECRET"):
        # Absent, not empty, for a public (PKCE) client: an empty one is check W006.
        FRAMEIO_OAUTH["CLIENT_SECRET"] = os.environ["FRAMEIO_CLIENT_SECRET"]
else:
    # The local stand-in: the preset of the server it plays, every URL pointed at it, and its
    # iss (RFC 9207). A confidential client, like Adobe's "OAuth Web App" credentials, the
    # kind that gets refresh tokens.
    FRAMEIO_OAUTH.update(
        client_settings(STANDIN_URL, STANDIN_MODE),
        CLIENT_ID="example-confidential",
        CLIENT_SECRET="example-secret",
    )

# --- Celery --------------------------------------------------------------------------------
# A folder is the default broker: no server to install. Set CELERY_BROKER_URL=redis://... for
# anything real (several workers, several machines).
_broker_dir = VAR_DIR / "celery-broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_broker_dir / "control"),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE = {
    "frameio-oauth-refresh-due": {
        "task": "frameio_oauth.tasks.refresh_due_tokens",
        # Each minute: the demo's short-lived tokens (docs/example.md) are refreshed well
        # before they expire.
        "schedule": 60.0,
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # propagate=False: Celery's worker logs through the root logger too, and every line
    # would be printed twice.
    "loggers": {"frameio_oauth": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
