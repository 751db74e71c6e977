"""``eddy token TENANT``: a fresh bearer token and the ``--auth-tokens`` line for it."""

from __future__ import annotations

import argparse

from .errors import UsageError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``token`` to the ``eddy`` subcommands."""
    k = sub.add_parser("token", help="print a fresh bearer token and the --auth-tokens line for it",
                       description="Print a new random token on the first line (give it to the client, e.g. as "
                                   "EDDY_TOKEN) and, on the second, the line to append to the --auth-tokens file "
                                   "(the file holds only the token's SHA-256, never the token).")
    k.add_argument("tenant", metavar="TENANT", help="tenant the token belongs to (letters, digits, ._-)")
    return k


def run(args: argparse.Namespace) -> int:
    """Print the token, then ``TENANT SHA256-HEX``; returns the exit status."""
    from eddy.runtime.grpc.security import new_token, token_digest, valid_tenant

    if not valid_tenant(args.tenant):
        raise UsageError(f"tenant {args.tenant!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                         "letter or digit")
    token = new_token()
    print(token)
    print(f"{args.tenant} {token_digest(token)}")
    return 0
