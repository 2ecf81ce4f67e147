"""Sphinx configuration: Markdown sources (MyST), the furo theme, autodoc for the Python API.

autodoc imports the app, which needs configured Django settings: a minimal in-memory
configuration is enough, since nothing here touches a database.
"""

from __future__ import annotations

import sys
from pathlib import Path

import django
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "frameio_oauth"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    USE_TZ=True,
    FRAMEIO_OAUTH={},
)
django.setup()

import frameio_oauth  # noqa: E402

project = "frameio-oauth"
author = "frameio-oauth maintainers"
copyright = "frameio-oauth maintainers"
release = version = frameio_oauth.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}

# Anchors for ## and ### headings, so pages can link to a section: operations.md#backoff.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

html_theme = "furo"
html_title = f"frameio-oauth {release}"
