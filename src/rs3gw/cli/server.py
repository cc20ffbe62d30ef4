"""`rs3gw`: run the server (configuration from RS3GW_* environment variables)."""
from __future__ import annotations

import sys

from ..server import main as _main


def main() -> None:
    sys.exit(_main(sys.argv[1:]))
