"""``python -m shipway_http_store.index STORE_DIR``: write the index files the http store reads."""

from __future__ import annotations

import sys
from pathlib import Path

from shipway_http_store.store import write_index


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m shipway_http_store.index STORE_DIR", file=sys.stderr)
        return 2
    for path in write_index(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
