"""The ``gateway`` command line.

Each sub-module registers its own sub-commands with ``register(subparsers, common)``; ``common`` is the parent
parser holding the flags that build :class:`~gateway.settings.Settings`. A command's handler has the signature
``handler(args, settings) -> int`` and is stored as ``func`` on the parsed namespace. Heavy libraries (torch,
OCR engines) are imported inside handlers so that ``gateway --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from gateway import __version__
from gateway.cli import align as align_cli
from gateway.cli import core as core_cli
from gateway.cli import delivery as delivery_cli
from gateway.cli import findings as findings_cli
from gateway.cli import read as read_cli
from gateway.cli import user as user_cli
from gateway.errors import ConfigError
from gateway.logs import configure_logging
from gateway.settings import Settings

__all__ = ["build_parser", "main"]

_MODULES = (core_cli, read_cli, align_cli, findings_cli, user_cli, delivery_cli)

# Flags that map one-to-one onto top-level settings fields.
_SETTINGS_FLAGS = (
    "data_dir",
    "dicom_port",
    "http_port",
    "ae_title",
    "stable_age",
    "api_token",
    "database_url",
)


def _common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group(
        "settings (flags win over GATEWAY_* variables, which win over --config)"
    )
    group.add_argument("--config", type=Path, default=None, help="gateway.toml")
    group.add_argument("--data-dir", type=Path, default=None)
    group.add_argument("--dicom-port", type=int, default=None, help="default 11112")
    group.add_argument("--http-port", type=int, default=None, help="default 8080")
    group.add_argument("--ae-title", default=None, help="default GATEWAY")
    group.add_argument(
        "--stable-age", type=float, default=None, help="seconds of quiet before a study is stable"
    )
    group.add_argument(
        "--api-token", default=None, help="bearer token for the HTTP API (or GATEWAY_API_TOKEN)"
    )
    group.add_argument("--database-url", default=None, help="SQLAlchemy URL; default SQLite in the data dir")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_parser()
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _MODULES:
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {name: getattr(args, name, None) for name in _SETTINGS_FLAGS}
    try:
        settings = Settings.load(getattr(args, "config", None), **overrides)
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        print(f"gateway: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log)
    try:
        code: int = args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except Exception:
        logging.getLogger("gateway").exception("command %s failed", args.command)
        return 1
    return code
