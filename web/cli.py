"""`evhub user add|list` and `evhub token create|list|revoke`: accounts from the command line, on
the configured recorder database, whether or not the hub is running (it sees changes at once).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from hub.clock import RealClock
from hub.security import hash_password
from hub.storage.schema import WRITER
from web import store
from web.auth import TOKEN_PREFIX, AuthError, check_name, check_password, check_role
from web.config import ROLES

T = TypeVar("T")


def configure(sub: Any, config_dir: Callable[[str], Path]) -> None:
    """Add the `user` and `token` commands to the `evhub` parser's subcommands."""
    user = sub.add_parser("user", help="manage web users")
    user_sub = user.add_subparsers(dest="action", required=True)
    add = user_sub.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="viewer")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (for scripts)")  # fmt: skip
    user_sub.add_parser("list", help="list users")
    token = sub.add_parser("token", help="manage API tokens")
    token_sub = token.add_subparsers(dest="action", required=True)
    create = token_sub.add_parser("create", help="create a token; it is printed once")
    create.add_argument("name")
    create.add_argument("--user", help="whose token (default: the only admin)")
    token_sub.add_parser("list", help="list tokens")
    revoke = token_sub.add_parser("revoke", help="revoke a token by id (or by its unique name)")
    revoke.add_argument("token")
    for parser in (add, user_sub.choices["list"], create, token_sub.choices["list"], revoke):
        parser.add_argument("-c", "--config", type=config_dir, default=Path("config"))


def run(args: argparse.Namespace) -> int:
    try:
        engine = _engine(args.config)
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1
    try:
        return _COMMANDS[(args.command, args.action)](engine, args)
    except AuthError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _engine(config_dir: Path) -> Engine:
    from hub.bootstrap import check_config, resolve_db_url
    from hub.storage.migrations import upgrade, upgrade_branch
    from hub.storage.schema import create_recorder_engine

    config, _, errors = check_config(config_dir)
    if errors:
        raise RuntimeError("\n".join(str(e) for e in errors))
    engine = create_recorder_engine(resolve_db_url(config["recorder"].get("db_url"), config_dir))
    upgrade(engine)
    upgrade_branch(engine, store.MIGRATIONS, store.BRANCH)
    return engine


def _write(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        conn.execution_options(**{WRITER: True})
        with conn.begin():
            return fn(conn)


def _read(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        return fn(conn)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return check_password(sys.stdin.readline().rstrip("\n"))
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise AuthError("the two passwords differ")
    return check_password(first)


def user_add(engine: Engine, args: argparse.Namespace) -> int:
    name, role = check_name(args.name), check_role(args.role)
    hashed = hash_password(_password(args.password_stdin))
    now = RealClock().now()
    try:
        _write(engine, lambda c: store.insert_user(c, name, role, hashed, now, first=False))
    except ValueError as err:
        raise AuthError(str(err)) from None
    print(f"user {name} added as {role}")
    return 0


def user_list(engine: Engine, args: argparse.Namespace) -> int:
    for user in _read(engine, store.list_users):
        state = " (disabled)" if user.disabled else ""
        print(f"{user.name}\t{user.role}{state}\t{user.created_at.isoformat()}")
    return 0


def token_create(engine: Engine, args: argparse.Namespace) -> int:
    import secrets

    users = _read(engine, store.list_users)
    if args.user:
        owner = next((u for u in users if u.name == args.user.lower()), None)
        if owner is None:
            raise AuthError(f"no user {args.user!r}")
    else:
        admins = [u for u in users if u.role == "admin" and not u.disabled]
        if len(admins) != 1:
            raise AuthError("say whose token it is: --user NAME")
        owner = admins[0]
    name = args.name.strip()
    if not 1 <= len(name) <= 64:
        raise AuthError("a token needs a name of 1-64 characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = RealClock().now()
    token = _write(engine, lambda c: store.insert_token(c, owner.id, name, secret, now))
    print(f"token {token.id} ({name}) for {owner.name} ({owner.role}); shown only now:",
          file=sys.stderr)  # fmt: skip
    print(secret)
    return 0


def token_list(engine: Engine, args: argparse.Namespace) -> int:
    for token in _read(engine, lambda c: store.list_tokens(c)):
        used = token.last_used_at.isoformat() if token.last_used_at else "never used"
        print(f"{token.id}\t{token.name}\t{token.user_name}\t{used}")
    return 0


def token_revoke(engine: Engine, args: argparse.Namespace) -> int:
    tokens = _read(engine, lambda c: store.list_tokens(c))
    matches = [t for t in tokens if args.token in (t.id, t.name)]
    if len(matches) != 1:
        raise AuthError(
            "no such token" if not matches else "several tokens have that name: use the id"
        )
    _write(engine, lambda c: store.delete_token(c, matches[0].id))
    print(f"token {matches[0].id} ({matches[0].name}) revoked")
    return 0


_COMMANDS: dict[tuple[str, str], Callable[[Engine, argparse.Namespace], int]] = {
    ("user", "add"): user_add,
    ("user", "list"): user_list,
    ("token", "create"): token_create,
    ("token", "list"): token_list,
    ("token", "revoke"): token_revoke,
}
