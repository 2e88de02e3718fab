"""Coverage-guided fuzzing of one target with atheris (libFuzzer), for a bounded time.

    python -m tests.fuzz.run TARGET --seconds 30 --seeds DIR [--corpus DIR] [--crashes DIR]

Seeds are valid inputs to start from; the working corpus grows in ``--corpus`` (a temporary
folder when left out). A crash writes the input to ``--crashes`` and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import atheris

# Instrument omniport (and the parsers it delegates to) so libFuzzer sees which branches an
# input reaches; modules imported before this block would run uninstrumented.
with atheris.instrument_imports(include=["omniport", "yaml", "json", "jsonschema", "tests.fuzz"]):
    from tests.fuzz.targets import TARGETS, run_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=[*sorted(TARGETS), "canary"])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--seeds", type=Path, required=True)
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--crashes", type=Path, default=Path("."))
    parser.add_argument("--max-len", type=int, default=16384)
    args = parser.parse_args()
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix=f"omniport-fuzz-{args.target}-"))
    corpus.mkdir(parents=True, exist_ok=True)
    args.crashes.mkdir(parents=True, exist_ok=True)
    libfuzzer = [
        sys.argv[0],
        str(corpus),
        str(args.seeds),
        f"-max_total_time={args.seconds}",
        f"-max_len={args.max_len}",
        "-rss_limit_mb=3072",
        "-timeout=20",
        f"-artifact_prefix={args.crashes}/{args.target}-",
        "-print_final_stats=1",
    ]
    target = args.target

    def one_input(data: bytes) -> None:
        run_one(target, data)

    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
