"""Review-page accounts and sessions.

Passwords are hashed with Argon2id (``argon2-cffi``'s defaults, RFC 9106); the session cookie is a random
token of which only the SHA-256 is stored, with its own CSRF token for forms. Which role may do what is
decided in :mod:`gateway.dicomweb.access`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gateway.dicomweb.access import ROLES
from gateway.index.models import UiAuditEvent, UiSession, UiUser, utcnow

_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as one for a known user.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(ValueError):
    """A bad username, role or password when creating an account."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: str
    csrf: str = ""


def add_user(
    session: Session, username: str, password: str, *, role: str, display_name: str | None = None
) -> int:
    username = username.strip()
    if not username or len(username) > 64 or any(c.isspace() for c in username):
        raise AccountError("a username is 1-64 characters without spaces")
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise AccountError("a password has at least 8 characters")
    if session.scalar(select(UiUser.id).where(UiUser.username == username)) is not None:
        raise AccountError(f"user {username!r} exists already")
    user = UiUser(
        username=username,
        display_name=display_name or username,
        role=role,
        password_hash=_hasher.hash(password),
    )
    session.add(user)
    session.flush()
    audit(session, None, "user-add", None, {"username": username, "role": role})
    return user.id


def authenticate(session: Session, username: str, password: str) -> User | None:
    row = session.scalar(select(UiUser).where(UiUser.username == username.strip()))
    try:
        _hasher.verify(row.password_hash if row is not None else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = _hasher.hash(password)
    return User(row.id, row.username, row.display_name, row.role)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_session(session: Session, user: User, lifetime: int) -> str:
    """Create a login and return the cookie value."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(UiSession).where(UiSession.expires_at < now))
    session.add(
        UiSession(
            token_sha256=_digest(token),
            user_fk=user.id,
            csrf=secrets.token_urlsafe(24),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=lifetime),
        )
    )
    return token


def session_user(session: Session, token: str | None) -> User | None:
    if not token:
        return None
    row = session.execute(
        select(UiSession, UiUser)
        .join(UiUser, UiSession.user_fk == UiUser.id)
        .where(UiSession.token_sha256 == _digest(token))
    ).one_or_none()
    if row is None:
        return None
    login, user = row.tuple()
    if login.expires_at < utcnow() or user.disabled:
        return None
    return User(user.id, user.username, user.display_name, user.role, login.csrf)


def close_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(UiSession).where(UiSession.token_sha256 == _digest(token)))


def audit(
    session: Session, user: User | None, action: str, study_fk: int | None, detail: dict[str, object]
) -> None:
    session.add(
        UiAuditEvent(
            user_fk=user.id if user else None,
            username=user.username if user else "system",
            action=action,
            study_fk=study_fk,
            detail=detail,
        )
    )
