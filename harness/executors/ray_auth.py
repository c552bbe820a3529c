"""Ray token authentication for a cluster given by address, settled before ``ray`` is imported.

``ray start`` turns token authentication on by default since Ray 2.59, but a driver that
connects with ``ray.init(address=...)`` sends the token only when ``RAY_AUTH_MODE=token`` is
in its environment *when ray is imported* (setting it later has no effect); without it the
driver retries "Unauthenticated" for 20 s and fails with "Failed to connect". A token-mode
driver also connects to a cluster without authentication, so when a token is at hand the
harness asks for token mode. This module must not import ray.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def auth_token_source() -> str | None:
    """Where Ray would read its auth token from, in Ray's order ($RAY_AUTH_TOKEN,
    $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token), or None when there is none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "$RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return path
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def prepare_token_auth() -> bool:
    """Set ``RAY_AUTH_MODE=token`` when a token is at hand, the user did not choose a mode
    and ray is not imported yet; True when it did."""
    if "RAY_AUTH_MODE" in os.environ or "ray" in sys.modules or auth_token_source() is None:
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    return True
