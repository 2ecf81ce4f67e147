"""Frame.io's legacy endpoints, as the test settings' "frameio" preset names them. The tests
mock them with ``responses``, which resolves nothing; conftest fails any test that would
reach the real host."""

from __future__ import annotations

TOKEN_URL = "https://applications.frame.io/oauth2/token"
REVOKE_URL = "https://applications.frame.io/oauth2/revoke"
USERINFO_URL = "https://api.frame.io/v2/me"
