"""Per-node agent tokens: issued when a node boots into the ramdisk, dropped after.

Only a SHA-256 of the token is stored, so a database dump does not let anyone act as
an agent; the token itself travels to the node in its boot configuration.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet.db.models import Node


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue(node: Node) -> str:
    """A fresh token for `node`; any earlier one stops working at once."""
    token = secrets.token_urlsafe(32)
    node.agent_token_hash = digest(token)
    return token


def revoke(node: Node) -> None:
    """The node's token stops working."""
    node.agent_token_hash = None


def owner(session: Session, token: str) -> Node | None:
    """The node a token belongs to, if any (constant-time compare on the match)."""
    hashed = digest(token)
    node = session.scalar(select(Node).where(Node.agent_token_hash == hashed))
    if node is None or not hmac.compare_digest(node.agent_token_hash or "", hashed):
        return None
    return node
