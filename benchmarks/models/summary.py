"""Print the model table of docs/models.md: ``python -m benchmarks.models.summary [pattern]``."""

from __future__ import annotations

import argparse

from ._registry import list_models
from ._summary import summary_table


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern")
    args = parser.parse_args(argv)
    print(summary_table(list_models(args.pattern)))


if __name__ == "__main__":
    main()
