"""Host-to-GPU copy rates that bound the ``stream`` plan: each new prompt moves Qwen3's 36 layers (about 14 GB in bf16)
from host memory to the GPU, so these rates set the floor of a new prompt's latency.

Measures, on 1 GiB: CPU memcpy from ordinary memory into pinned memory (what packing a layer costs), pinned-to-GPU and
pageable-to-GPU copies. Prints GB/s (10^9 bytes per second) and the floor for 14 GB at each rate.
"""

import time

import torch

SIZE = 1 << 30
STREAMED_BYTES = 36 * 193_000_000 * 2  # Qwen3-8B decoder layers in bf16


def rate(copy, repeats: int = 5) -> float:
    copy()
    torch.cuda.synchronize()
    begin = time.perf_counter()
    for _ in range(repeats):
        copy()
    torch.cuda.synchronize()
    return SIZE * repeats / (time.perf_counter() - begin) / 1e9


def main() -> None:
    pageable = torch.randint(0, 255, (SIZE,), dtype=torch.uint8)
    pinned = torch.empty(SIZE, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(SIZE, dtype=torch.uint8, device="cuda")
    rates = {
        "memcpy pageable -> pinned (CPU)": rate(lambda: pinned.copy_(pageable)),
        "pinned -> GPU": rate(lambda: device.copy_(pinned, non_blocking=True)),
        "pageable -> GPU": rate(lambda: device.copy_(pageable)),
    }
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for name, value in rates.items():
        print(f"{name}: {value:.1f} GB/s -> {STREAMED_BYTES / 1e9 / value:.2f} s for the streamed layers")


if __name__ == "__main__":
    main()
