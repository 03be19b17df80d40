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
    session: Session,
    username: str,
    password: str,
    *,
    role: str,
    display_name: str | None = None,
    by: User | None = None,
) -> int:
    """Create an account; ``by`` is the administrator who did it in the review page (None: the command
    line), named in the audit record."""
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
    audit(session, by, "user-add", None, {"username": username, "role": role})
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


# -- administration (the review page's account list; every change audited with the administrator) ----------


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    display_name: str
    role: str
    disabled: bool
    created_at: dt.datetime


def list_users(session: Session) -> list[Account]:
    return [
        Account(u.id, u.username, u.display_name, u.role, u.disabled, u.created_at)
        for u in session.scalars(select(UiUser).order_by(UiUser.username))
    ]


def _target(session: Session, username: str) -> UiUser:
    row = session.scalar(select(UiUser).where(UiUser.username == username))
    if row is None:
        raise AccountError(f"no user {username!r}")
    return row


def _other_active_admins(session: Session, row: UiUser) -> int:
    return len(
        session.scalars(
            select(UiUser.id).where(
                UiUser.role == "administrator", UiUser.disabled.is_(False), UiUser.id != row.id
            )
        ).all()
    )


def change_user(
    session: Session,
    admin: User,
    username: str,
    *,
    action: str,
    role: str | None = None,
    password: str | None = None,
) -> None:
    """``action``: disable | enable | reset (``password``) | role (``role``). Disabling or resetting ends the
    user's sessions. The last active administrator can be neither disabled nor demoted."""
    row = _target(session, username)
    detail: dict[str, object] = {"username": username}
    if action == "disable":
        if row.role == "administrator" and not _other_active_admins(session, row):
            raise AccountError("the last active administrator cannot be disabled")
        row.disabled = True
        session.execute(delete(UiSession).where(UiSession.user_fk == row.id))
    elif action == "enable":
        row.disabled = False
    elif action == "reset":
        if password is None or len(password) < 8:
            raise AccountError("a password has at least 8 characters")
        row.password_hash = _hasher.hash(password)
        session.execute(delete(UiSession).where(UiSession.user_fk == row.id))
    elif action == "role":
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        if row.role == "administrator" and role != "administrator" and not _other_active_admins(session, row):
            raise AccountError("the last active administrator cannot lose the role")
        detail.update({"was": row.role, "now": role})
        row.role = role
    else:
        raise AccountError(f"unknown account action {action!r}")
    audit(session, admin, f"user-{action}", None, detail)


def enabled_user(session: Session, username: str) -> User | None:
    """The enabled account of this name (a sign-in through OpenID Connect names it by a claim)."""
    row = session.scalar(select(UiUser).where(UiUser.username == username.strip()))
    if row is None or row.disabled:
        return None
    return User(row.id, row.username, row.display_name, row.role)
