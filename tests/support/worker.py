"""A separate process for the concurrency tests: ``python -m tests.support.worker get-token USER_ID
START_AT`` waits until the wall-clock time START_AT, asks for the user's access token and
prints its SHA-256 (never the token). The database and provider come from the environment
(FRAMEIO_TEST_PGDATABASE, FRAMEIO_TEST_OAUTH_JSON), as the parent test sets them."""

from __future__ import annotations

import hashlib
import os
import sys
import time


def main(argv: list[str]) -> int:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.support.settings"
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from frameio_oauth import services

    mode, user_id, start_at = argv
    assert mode == "get-token"
    user = get_user_model().objects.get(pk=int(user_id))
    time.sleep(max(float(start_at) - time.time(), 0))
    token = services.get_access_token(user)
    print(hashlib.sha256(token.encode()).hexdigest(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
