"""How hard the property tests try. ``make test`` runs each a few hundred times; the long
fuzz run (scripts/fuzz-long) multiplies that with MAILWARD_FUZZ_SCALE. A failing case the
long run finds is added to its test with ``@example(...)`` so it stays a regression test."""

import os

SCALE = int(os.environ.get("MAILWARD_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    return n * SCALE
