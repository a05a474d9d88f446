"""The `atoma-proxy` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any

from atoma_proxy.config import CONFIG_ENV, Settings, load_settings

__all__ = ["build_parser", "main"]


def _settings(args: argparse.Namespace) -> Settings:
    if getattr(args, "config", None):
        os.environ[CONFIG_ENV] = args.config
    settings = load_settings()
    if args.log_level is None or args.log_format is None:  # the command line wins over [logging]
        _configure_logging(args, settings.logging.level, settings.logging.format)
    return settings


def _configure_logging(args: argparse.Namespace, level: str = "INFO", fmt: str = "text") -> None:
    from atoma_proxy.core.telemetry.logs import configure_logging

    configure_logging(args.log_level or level, args.log_format or fmt, getattr(args, "as_worker", None))


def _database(settings: Settings, command: str) -> str:
    """The database URL this command uses, said in the log (src/core/persistence/admin.py)."""
    from atoma_proxy.core.persistence.admin import announce

    return announce(settings.database.url, command)


def _run_server(main: Coroutine[Any, Any, None], command: str) -> None:
    """Serve on uvloop: measured 9-14% more requests per second than asyncio's own loop, in both
    the core and the facade (bench/README.md, "Event loop"). A taken port is one line and exit 1."""
    import uvloop

    from atoma_proxy.runner import PortInUse

    try:
        uvloop.run(main)
    except PortInUse as error:
        sys.exit(f"atoma-proxy {command}: {error}")


def _serve(args: argparse.Namespace) -> None:
    from atoma_proxy.runner import run_until_stopped

    settings = _settings(args)
    if args.command != "facade" and not getattr(args, "as_worker", None):
        _database(settings, args.command)
    if args.command == "serve":
        _run_server(run_until_stopped(settings, core=True, facade=True, migrate=not args.no_migrate), "serve")
        return
    core = args.command == "core"
    workers = args.workers or (settings.core if core else settings.facade).workers
    if args.as_worker:  # one of the processes that _run_workers starts
        _run_server(run_until_stopped(settings, core=core, facade=not core, migrate=False, worker=True), args.command)
    elif workers > 1:
        _run_workers(args, settings, workers)
    else:
        _run_server(
            run_until_stopped(settings, core=core, facade=not core, migrate=core and args.migrate), args.command
        )


def _run_workers(args: argparse.Namespace, settings: Settings, workers: int) -> None:
    """`workers` processes of `core` or `facade` on one port (src/workers.py). They read the
    configuration file from ATOMA_CONFIG, which `_settings` exported."""
    import signal

    from atoma_proxy.workers import run_workers, shared_metrics_directory

    core = args.command == "core"
    address = settings.core.listen if core else f"{settings.facade.host}:{settings.facade.port}"
    port = address.rpartition(":")[2]
    if address.startswith("unix") or not port.isdigit() or int(port) == 0:
        sys.exit(f"atoma-proxy {args.command}: {workers} workers need a fixed TCP port to share, not {address}")
    if core and args.migrate:  # once, before any worker starts
        from atoma_proxy.core.persistence import upgrade_database

        asyncio.run(upgrade_database(settings.database.url))
    logging.getLogger(__name__).info("atoma-proxy %s: %d workers on %s", args.command, workers, address)
    forward = (signal.SIGHUP,) if core else ()  # the core reloads its nodes on SIGHUP
    logging_args = [f"--log-level={args.log_level}"] if args.log_level else []
    logging_args += [f"--log-format={args.log_format}"] if args.log_format else []
    with shared_metrics_directory():
        sys.exit(run_workers([*logging_args, args.command], workers, forward=forward))


def _worker_count(text: str) -> int:
    count = int(text)
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"{count} is not between 1 and 64")
    return count


def _demo(args: argparse.Namespace) -> None:
    from atoma_proxy.demo import run_demo

    settings = _settings(args)
    _database(settings, "demo")
    _run_server(run_demo(settings), "demo")


def _node_sim(args: argparse.Namespace) -> None:
    from atoma_proxy.nodesim.config import config_from_args
    from atoma_proxy.nodesim.server import run_node_sim

    run_node_sim(config_from_args(args), args.host, args.port)


def _confidential_node(args: argparse.Namespace) -> None:
    from atoma_proxy.confidential.cli import run_confidential_node

    run_confidential_node(args)


def _keys_create(args: argparse.Namespace) -> None:
    from atoma_proxy.core.persistence import create_api_key

    url = _database(_settings(args), "keys create")
    print(asyncio.run(create_api_key(url, email=args.email, name=args.name)))


def _balance(args: argparse.Namespace) -> None:
    from atoma_proxy.core.ledger import admin

    url = _database(_settings(args), f"balance {args.balance_command}")
    try:
        if args.balance_command == "credit":
            result = asyncio.run(
                admin.credit_user(url, email=args.email, amount=args.micro_usd, idempotency_key=args.idempotency_key)
            )
            print(("credited" if result.applied else "already credited (same idempotency key)") + f" {args.micro_usd}")
            print(admin.format_balance(args.email, result.balance))
        else:
            print(admin.format_balance(args.email, asyncio.run(admin.show_balance(url, email=args.email))))
    except (admin.UnknownUser, ValueError) as error:
        sys.exit(f"atoma-proxy balance: {error}")


def _prices_set(args: argparse.Namespace) -> None:
    from atoma_proxy.core.ledger import admin

    url = _database(_settings(args), "prices set")
    try:
        asyncio.run(
            admin.set_user_price(
                url, email=args.email, model=args.model, input_per_million=args.input, output_per_million=args.output
            )
        )
    except (admin.UnknownUser, ValueError) as error:
        sys.exit(f"atoma-proxy prices: {error}")
    print(f"{args.email} pays {args.input} / {args.output} micro-USD per million input / output tokens of {args.model}")


def _users_create(args: argparse.Namespace) -> None:
    from atoma_proxy.core.accounts.users_admin import create_user
    from atoma_proxy.core.errors import ProxyError

    password = _read_password() if args.password else None
    try:
        user_id = asyncio.run(
            create_user(_database(_settings(args), "users create"), email=args.email, password=password)
        )
    except ProxyError as error:
        sys.exit(f"atoma-proxy users create: {error.message}")
    print(user_id)


def _read_password() -> str:
    """Prompted twice on a terminal; otherwise the first line of standard input (for scripts)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    import getpass

    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        sys.exit("atoma-proxy users create: the passwords differ")
    return password


def _db_upgrade(args: argparse.Namespace) -> None:
    from atoma_proxy.core.persistence import upgrade_database

    asyncio.run(upgrade_database(_database(_settings(args), "db upgrade"), args.revision))
    print(f"database at revision {args.revision}")


def build_parser() -> argparse.ArgumentParser:
    from atoma_proxy.nodesim.config import add_cli_arguments

    parser = argparse.ArgumentParser(
        prog="atoma-proxy", description="OpenAI-compatible gateway to a network of inference nodes."
    )
    parser.add_argument("--log-level", help="Python logging level (default: [logging] level, INFO).")
    parser.add_argument(
        "--log-format", choices=("text", "json"), help="Log line format (default: [logging] format, text)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, run, config: bool = True) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        sub = commands.add_parser(name, help=help, description=help)
        if config:
            sub.add_argument("--config", help=f"TOML configuration file (or ${CONFIG_ENV}).")
        sub.set_defaults(run=run)
        return sub

    serve = command("serve", "Run the gRPC core and the OpenAI facade in one process (local use).", _serve)
    serve.add_argument("--no-migrate", action="store_true", help="Do not upgrade the database schema first.")
    core = command("core", "Run the gRPC routing core alone.", _serve)
    core.add_argument("--migrate", action="store_true", help="Upgrade the database schema before starting.")
    facade = command("facade", "Run the OpenAI REST facade alone, in front of a core.", _serve)
    for sub, section in ((core, "core"), (facade, "facade")):
        sub.add_argument(
            "--workers",
            type=_worker_count,
            metavar="N",
            help=f"Processes sharing the listen port (default {section}.workers; Linux SO_REUSEPORT).",
        )
        sub.add_argument("--as-worker", type=int, metavar="N", help=argparse.SUPPRESS)  # set by src/workers.py
    command("demo", "Run the proxy with three built-in simulated nodes and print a ready API key.", _demo)
    sim = command("node-sim", "Run a simulated OpenAI-compatible inference node.", _node_sim, config=False)
    add_cli_arguments(sim)
    from atoma_proxy.confidential.cli import add_confidential_node_arguments

    add_confidential_node_arguments(
        command(
            "confidential-node",
            "Run a confidential-compute sidecar in front of an OpenAI-compatible engine (docs/confidential.md).",
            _confidential_node,
            config=False,
        )
    )

    keys = commands.add_parser("keys", help="Manage API keys.", description="Manage API keys.")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = key_commands.add_parser("create", help="Create an API key and print it once.")
    create.add_argument("--config", help=f"TOML configuration file (or ${CONFIG_ENV}).")
    create.add_argument("--email", default="local@atoma.proxy", help="Owner of the key (created if new).")
    create.add_argument("--name", default="default", help="A label for the key.")
    create.set_defaults(run=_keys_create)

    balance = commands.add_parser(
        "balance", help="Credit and inspect users' balances.", description="Credit and inspect users' balances."
    )
    balance_commands = balance.add_subparsers(dest="balance_command", required=True, metavar="COMMAND")
    credit = balance_commands.add_parser("credit", help="Add micro-USD to a user's balance (user created if new).")
    credit.add_argument("--micro-usd", type=int, required=True, help="Amount in micro-USD (1 USD = 1000000).")
    credit.add_argument("--idempotency-key", help="Applied once per key (default: a new random key).")
    show = balance_commands.add_parser("show", help="Print a user's balance in micro-USD.")
    for sub in (credit, show):
        sub.add_argument("--config", help=f"TOML configuration file (or ${CONFIG_ENV}).")
        sub.add_argument("--email", required=True, help="The user's email.")
        sub.set_defaults(run=_balance)

    prices = commands.add_parser("prices", help="Per-user model prices.", description="Per-user model prices.")
    price_commands = prices.add_subparsers(dest="prices_command", required=True, metavar="COMMAND")
    price_set = price_commands.add_parser("set", help="Give a user its own price for a model (replaces node prices).")
    price_set.add_argument("--config", help=f"TOML configuration file (or ${CONFIG_ENV}).")
    price_set.add_argument("--email", required=True, help="The user's email.")
    price_set.add_argument("--model", required=True, help="The model.")
    price_set.add_argument("--input", type=int, required=True, help="Micro-USD per million prompt tokens.")
    price_set.add_argument("--output", type=int, required=True, help="Micro-USD per million generated tokens.")
    price_set.set_defaults(run=_prices_set)

    users = commands.add_parser("users", help="Manage user accounts.", description="Manage user accounts.")
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    user_create = user_commands.add_parser("create", help="Create a user and print its id.")
    user_create.add_argument("--config", help=f"TOML configuration file (or ${CONFIG_ENV}).")
    user_create.add_argument("--email", required=True, help="The user's email (its login).")
    user_create.add_argument(
        "--password",
        action="store_true",
        help="Give it a password so it can log in: prompted, or read from standard input when that is not a terminal.",
    )
    user_create.set_defaults(run=_users_create)

    db = commands.add_parser("db", help="Manage the database schema.", description="Manage the database schema.")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="Apply the Alembic migrations.")
    upgrade.add_argument("--config", help=f"TOML configuration file (or ${CONFIG_ENV}).")
    upgrade.add_argument("--revision", default="head", help="Target revision (default head).")
    upgrade.set_defaults(run=_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    _configure_logging(args)  # until the settings are read: they may name another level and format
    try:
        args.run(args)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
