"""Helpers shared by the ``hwnas`` sub-command modules (docs/reliability.md, *Exit codes*)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

__all__ = ["one_line_errors"]


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make argparse's own errors (unknown option, bad or missing value) one line, exit 2, without the usage block."""

    def error(message: str) -> NoReturn:
        print(f"hwnas: error: {parser.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)

    parse = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        ns, extras = parse(args, namespace)
        if extras:  # the top-level parser would report them with its usage block
            error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras

    parser.error = error  # type: ignore[method-assign]
    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]
