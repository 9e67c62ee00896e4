"""``evalforge users create|reset-password``: dashboard users from the command line.

The password is read from stdin (one line) when stdin is not a terminal; otherwise, or when that line
is empty, one is generated and printed once. It is stored only as an argon2 hash.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.accounts import ROLES, create_user, generate_password, set_membership, set_password
from core.auth import ensure_project


def add_parser(sub) -> None:
    users = sub.add_parser("users", help="dashboard users")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create = users_sub.add_parser("create", help="create a user (password from stdin, or generated and printed)")
    create.add_argument("--email", required=True)
    create.add_argument("--name", default="")
    create.add_argument("--project", help="make the user a member of this project (created if needed)")
    create.add_argument("--role", choices=ROLES, help="the user's role in --project (default member)")
    reset = users_sub.add_parser("reset-password",
                                 help="set a new password (from stdin, or generated and printed) and end the user's sessions")
    reset.add_argument("--email", required=True)
    for p in (create, reset):
        p.add_argument("--data-dir", type=Path)


def _password_from_stdin() -> tuple[str, bool]:
    """(password, generated)."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if line:
            return line, False
    return generate_password(), True


def run(args: argparse.Namespace, with_postgres) -> int:
    """Execute the sub-command; ``with_postgres(fn)`` runs ``fn(conn)`` on the configured PostgreSQL."""
    if args.users_command == "create" and args.role and not args.project:
        raise SystemExit("evalforge: error: --role: needs --project")
    password, generated = _password_from_stdin()

    if args.users_command == "create":
        def create(conn) -> str:
            with conn.transaction():
                user = create_user(conn, args.email, password, args.name)
                if not args.project:
                    return f"created user {user.email}"
                project = ensure_project(conn, args.project)
                set_membership(conn, project.id, user.id, args.role or "member")
                return f"created user {user.email} ({args.role or 'member'} of project {project.name!r})"

        try:
            print(with_postgres(create))
        except ValueError as exc:
            raise SystemExit(f"evalforge: error: {exc}") from None
    else:
        try:
            found = with_postgres(lambda conn: set_password(conn, args.email, password))
        except ValueError as exc:
            raise SystemExit(f"evalforge: error: {exc}") from None
        if found is None:
            print(f"evalforge: error: no user with email {args.email!r}", file=sys.stderr)
            return 1
        print(f"new password set for {args.email.strip().lower()}; their sessions are ended")
    if generated:
        print(f"password (shown once): {password}")
    return 0
