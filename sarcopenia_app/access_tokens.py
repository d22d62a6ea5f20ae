"""Bearer tokens for a server without an identity provider (Keycloak cannot run everywhere).

An admin creates one random token per person with its roles (``sarcopenia access-token``); the
file keeps only SHA-256 hashes, so a copy of it lets no one in. Role names are MONAI Label's
Keycloak roles, so a deployment can move to Keycloak without renaming anything. The file is
re-read when it changes: removing a line revokes a token without restarting the server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Optional, Sequence, Tuple, Union

from .safe_files import write_json_atomically

ROLES = {"admin": "monailabel-admin", "reviewer": "monailabel-reviewer", "annotator": "monailabel-annotator",
         "user": "monailabel-user"}  # short name -> MONAI Label's (Keycloak) role name


@dataclass(frozen=True)
class TokenUser:
    user: str
    roles: FrozenSet[str]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Who a bearer token belongs to, from a token file."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self._by_hash: Dict[str, TokenUser] = {}
        self._mtime: Optional[float] = None
        self._reload()  # a missing or broken file fails at start, not at the first request

    def _reload(self) -> None:
        mtime = os.stat(self.path).st_mtime
        if mtime == self._mtime:
            return
        entries = json.loads(self.path.read_text()).get("tokens", [])
        self._by_hash = {e["sha256"]: TokenUser(e["user"], frozenset(e["roles"])) for e in entries}
        self._mtime = mtime

    def user_for(self, token: str) -> Optional[TokenUser]:
        self._reload()
        digest = token_hash(token)
        for known, user in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return user
        return None


def add_token(path: Union[str, Path], user: str, roles: Sequence[str]) -> Tuple[str, TokenUser]:
    """Create a token for ``user`` with ``roles`` (short names, see ROLES) and store its hash.
    Returns the token: it is shown once and cannot be read back from the file."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"unknown role(s) {unknown}; choose from {', '.join(ROLES)}")
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {"tokens": []}
    token = secrets.token_urlsafe(32)
    entry = {"user": user, "roles": sorted(ROLES[r] for r in roles), "sha256": token_hash(token)}
    data["tokens"].append(entry)
    write_json_atomically(path, data, keep_backup=False)
    os.chmod(path, 0o600)
    return token, TokenUser(user, frozenset(entry["roles"]))
