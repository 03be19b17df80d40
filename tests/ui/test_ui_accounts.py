"""Account management by administrators through the real routes (both index back ends): list, add, disable,
enable, reset a password and change a role, each audited with the administrator's name; readers may not."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_ui_worklist import _client, _login, _seed

from gateway.index.models import UiAuditEvent, UiUser
from gateway.settings import Settings


def test_administrator_manages_accounts(sessions: sessionmaker[Session], settings: Settings) -> None:
    _seed(sessions)
    reader = _client(sessions, settings)
    reader_csrf = _login(reader, "reader", "reader-password")
    assert reader.get("/ui/admin/users").status_code == 403  # not shown to readers
    assert "/ui/admin/users" not in reader.get("/ui/worklist").text
    forged = reader.post(
        "/ui/admin/users",
        data={"csrf": reader_csrf, "action": "role", "username": "reader", "role": "administrator"},
    )
    assert forged.status_code == 403

    admin = _client(sessions, settings)
    csrf = _login(admin, "admin", "admin-password")
    assert 'id="nav-users"' in admin.get("/ui/worklist").text
    listing = admin.get("/ui/admin/users").text
    assert 'data-user="reader"' in listing and 'data-user="admin"' in listing

    def post(**data: str) -> str:
        r = admin.post("/ui/admin/users", data={"csrf": csrf, **data})
        assert r.status_code == 200, r.text
        return r.text

    page = post(
        action="add", username="reader2", display_name="Dr Two", role="reader", password="long-enough-1"
    )
    assert 'data-user="reader2"' in page
    assert "at least 8" in post_error(
        admin, csrf, action="add", username="r3", role="reader", password="short"
    )
    assert "exists already" in post_error(
        admin, csrf, action="add", username="reader2", role="reader", password="long-enough-1"
    )

    # Disable ends the reader's session; enable lets them log in again.
    post(action="disable", username="reader")
    assert reader.get("/ui/worklist", follow_redirects=False).status_code == 303
    post(action="enable", username="reader")
    _login(reader, "reader", "reader-password")

    # Reset: the old password no longer works, the new one does, and sessions end.
    post(action="reset", username="reader", password="a-new-password")
    assert reader.get("/ui/worklist", follow_redirects=False).status_code == 303
    _login(reader, "reader", "a-new-password")

    # Change a role; the last active administrator keeps theirs.
    post(action="role", username="reader2", role="administrator")
    post(action="role", username="reader2", role="reader")
    assert "last active administrator" in post_error(
        admin, csrf, action="role", username="admin", role="reader"
    )
    assert "last active administrator" in post_error(admin, csrf, action="disable", username="admin")

    with sessions() as session:
        roles = {u.username: (u.role, u.disabled) for u in session.scalars(select(UiUser))}
        events = list(session.scalars(select(UiAuditEvent).order_by(UiAuditEvent.id)))
        trail = [(a.username, a.action, a.detail.get("username")) for a in events]
        details = " ".join(str(a.detail) for a in events)
    assert roles["reader2"] == ("reader", False) and roles["admin"] == ("administrator", False)
    for expected in [
        ("admin", "user-add", "reader2"),
        ("admin", "user-disable", "reader"),
        ("admin", "user-enable", "reader"),
        ("admin", "user-reset", "reader"),
        ("admin", "user-role", "reader2"),
    ]:
        assert expected in trail, trail
    assert "a-new-password" not in details and "long-enough-1" not in details  # no password is kept


def post_error(client: object, csrf: str, **data: str) -> str:
    r = client.post("/ui/admin/users", data={"csrf": csrf, **data})  # type: ignore[attr-defined]
    assert r.status_code == 400, r.text
    found = re.search(r'<p class="error" role="alert">([^<]*)</p>', r.text)
    assert found is not None
    return found.group(1)
