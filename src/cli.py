"""The `atoma-proxy` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from atoma_proxy.config import CONFIG_ENV, load_settings


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    if getattr(args, "config", None):
        os.environ[CONFIG_ENV] = args.config
    return load_settings()


def _serve(args: argparse.Namespace) -> None:
    from atoma_proxy.runner import run_until_stopped

    settings = _settings(args)
    if args.command == "serve":
        asyncio.run(run_until_stopped(settings, core=True, facade=True, migrate=not args.no_migrate))
    elif args.command == "core":
        asyncio.run(run_until_stopped(settings, core=True, facade=False, migrate=args.migrate))
    else:
        asyncio.run(run_until_stopped(settings, core=False, facade=True, migrate=False))


def _demo(args: argparse.Namespace) -> None:
    from atoma_proxy.demo import run_demo

    asyncio.run(run_demo(_settings(args)))


def _node_sim(args: argparse.Namespace) -> None:
    from atoma_proxy.nodesim.config import config_from_args
    from atoma_proxy.nodesim.server import run_node_sim

    run_node_sim(config_from_args(args), args.host, args.port)


def _keys_create(args: argparse.Namespace) -> None:
    from atoma_proxy.core.persistence import create_api_key

    settings = _settings(args)
    print(asyncio.run(create_api_key(settings.database.url, email=args.email, name=args.name)))


def _db_upgrade(args: argparse.Namespace) -> None:
    from atoma_proxy.core.persistence import upgrade_database

    settings = _settings(args)
    asyncio.run(upgrade_database(settings.database.url, args.revision))
    print(f"database at revision {args.revision}")


def build_parser() -> argparse.ArgumentParser:
    from atoma_proxy.nodesim.config import add_cli_arguments

    parser = argparse.ArgumentParser(
        prog="atoma-proxy", description="OpenAI-compatible gateway to a network of inference nodes."
    )
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO).")
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
    command("facade", "Run the OpenAI REST facade alone, in front of a core.", _serve)
    command("demo", "Run the proxy with three built-in simulated nodes and print a ready API key.", _demo)
    sim = command("node-sim", "Run a simulated OpenAI-compatible inference node.", _node_sim, config=False)
    add_cli_arguments(sim)

    keys = commands.add_parser("keys", help="Manage API keys.", description="Manage API keys.")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = key_commands.add_parser("create", help="Create an API key and print it once.")
    create.add_argument("--config", help=f"TOML configuration file (or ${CONFIG_ENV}).")
    create.add_argument("--email", default="local@atoma.proxy", help="Owner of the key (created if new).")
    create.add_argument("--name", default="default", help="A label for the key.")
    create.set_defaults(run=_keys_create)

    db = commands.add_parser("db", help="Manage the database schema.", description="Manage the database schema.")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="Apply the Alembic migrations.")
    upgrade.add_argument("--config", help=f"TOML configuration file (or ${CONFIG_ENV}).")
    upgrade.add_argument("--revision", default="head", help="Target revision (default head).")
    upgrade.set_defaults(run=_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpcore", "alembic"):  # a line per request or migration step is noise
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        args.run(args)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
