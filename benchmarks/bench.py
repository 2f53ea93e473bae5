"""Run ``hymotion bench`` from a source checkout (the device machine runs it this way; see docs/performance.md)."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from hymotion.bench import add_bench_arguments, bench_main  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_bench_arguments(parser)
    sys.exit(bench_main(parser.parse_args()))
