"""What every command shares: the config it reads and the exit statuses it answers with."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.config import load_config
from gateway.config.model import Config
from gateway.errors import CommandError, ConfigError

DEFAULT_CONFIG = "config.yaml"


class SigningError(CommandError):
    """The source's provider cannot sign the given body (e.g. Rafiki's extra fields)."""


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("WEBHOOK_GATEWAY_CONFIG") or DEFAULT_CONFIG)


def load_args(args: argparse.Namespace) -> Config:
    return load_config(config_path(args))


def report_config_error(path: Path, exc: ConfigError) -> int:
    print(f"config {path} is not valid:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_FAILED


#: The payments service's ``status`` for each event type it sends (the marketplace answers 400
#: to any other status).
