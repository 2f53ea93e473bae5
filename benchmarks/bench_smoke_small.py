"""A CPU smoke check of ``hymotion bench``'s code paths at toy sizes (the real run needs a CUDA machine and minutes):
the same parent and child processes, the shapes shrunk so a laptop runs every plan option in a minute or two.

    python benchmarks/bench_smoke_small.py --plans partial,stream+cold,partial+int8+cold --int8-deviation-prompts 2
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from hymotion import bench  # noqa: E402

SMALL_QWEN = dict(bench.QWEN3_8B_SHAPE, vocab_size=512, intermediate_size=96, num_hidden_layers=6,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16)
SMALL_CLIP = dict(bench.CLIP_L_SHAPE, hidden_size=768, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
SMALL_DIT = dict(feat_dim=64, num_layers=3, num_heads=2)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    bench.add_bench_arguments(parser)
    bench.QWEN3_8B_SHAPE, bench.CLIP_L_SHAPE = SMALL_QWEN, SMALL_CLIP
    bench.DIT_SHAPES = {variant: SMALL_DIT for variant in bench.DIT_SHAPES}
    sys.exit(bench.bench_main(parser.parse_args()))
