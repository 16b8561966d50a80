"""The ``aiops-runtime`` command: ``train`` the model, ``serve`` it over HTTP, print the
``settings-table``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aiops_runtime.train import add_arguments as train_arguments

# How uvicorn serves the app; the benchmark's floor server uses the same, to compare like with like.
SERVER_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "log_config": None,
    "access_log": False,
    "server_header": False,
    "timeout_graceful_shutdown": 10,
}


def _train(args: argparse.Namespace) -> int:
    from aiops_runtime import train

    return train.run(args)


def _settings_table(args: argparse.Namespace) -> int:
    from aiops_runtime.settings import settings_markdown

    sys.stdout.write(settings_markdown())
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from aiops_runtime.app import create_app
    from aiops_runtime.logs import configure_logging
    from aiops_runtime.settings import RuntimeSettings

    overrides: dict[str, Any] = {
        key: value
        for key, value in (("model_dir", args.model_dir), ("host", args.host), ("port", args.port))
        if value is not None
    }
    try:
        settings = RuntimeSettings(**overrides)
    except ValidationError as exc:
        print(f"error: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.model_name)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, **server_options(settings)
    )
    return 0


def server_options(settings: Any) -> dict[str, Any]:
    """SERVER_OPTIONS with the per-client limits of `settings`: a deadline to send each request
    (http_limits.py) and the most connections and requests at once (past it: 503)."""
    from aiops_runtime.http_limits import read_timeout_protocol

    return {
        **SERVER_OPTIONS,
        "http": read_timeout_protocol(settings.request_read_timeout_s),
        "limit_concurrency": settings.max_concurrency or None,
    }


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``aiops-runtime``."""
    parser = argparse.ArgumentParser(prog="aiops-runtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train on the bundled breast-cancer data")
    train_arguments(train)
    train.set_defaults(handler=_train)

    serve = commands.add_parser(
        "serve", help="serve the model over HTTP (settings come from the environment)"
    )
    serve.add_argument("--model-dir", type=Path, help="directory written by train (MODEL_DIR)")
    serve.add_argument("--host", help="bind address (HOST, default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (PORT, default 8000)")
    serve.set_defaults(handler=_serve)

    table = commands.add_parser(
        "settings-table", help="print the settings as the Markdown table of docs/runtime.md"
    )
    table.set_defaults(handler=_settings_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
