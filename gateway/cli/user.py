"""``gateway user add``: create a review-page account (reader or administrator)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from gateway.settings import Settings


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("user", parents=[common], help="review-page accounts")
    user_sub = p.add_subparsers(dest="user_command", required=True)
    a = user_sub.add_parser("add", parents=[common], help="create an account")
    a.add_argument("username")
    a.add_argument("--role", choices=["reader", "administrator"], default="reader")
    a.add_argument("--display-name", default=None, help="the name shown as the report's interpreter")
    a.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input (no prompt)"
    )
    a.set_defaults(func=cmd_user_add)


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.index.db import open_index
    from gateway.ui.accounts import AccountError, add_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            print("gateway: the passwords differ", file=sys.stderr)
            return 2
    sessions = open_index(settings.index_url)
    try:
        with sessions.begin() as session:
            add_user(session, args.username, password, role=args.role, display_name=args.display_name)
    except AccountError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.username} added ({args.role})")
    return 0
