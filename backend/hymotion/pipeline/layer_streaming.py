"""The ``stream`` plan's engine: Qwen3's decoder layers run on the GPU while their weights stay in host memory.

The host weights are the memory-mapped safetensors files themselves (``model.text_encoder.load_qwen_base``), so they
live in the page cache (file-backed, evictable) rather than in the process's own memory. Per forward pass each layer
is copied into one of two GPU slots: the CPU packs layer i+2 into a pinned staging buffer while a side CUDA stream
copies layer i+1 into its slot and the default stream computes layer i, so copying and computing overlap and the GPU
holds two layers (about 0.8 GB for Qwen3-8B) instead of 36. The token embedding table (1.2 GB) stays on the host: a
prompt needs only its own rows, looked up there and sent over. The ``gpu`` plan uploads Qwen3 through the same pinned
path once (:func:`upload`).

Every layer's parameters are permanent views into its slot (layers i and i+2 share one), so no parameter is ever
re-bound during a pass. On a CPU device the same code runs without streams or pinned memory (tests use that).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from ..weights import read_safetensors_header


class LayerStreamer:
    """Streams ``model.layers`` through ``device``; :meth:`detach` gives the model its host weights back.

    ``resident``: the first that many layers are copied to ``device`` once and stay there (the ``partial`` plan);
    only the others stream. Their copies start when a pass starts, so the first streamed layers arrive while the
    resident ones compute. A layer's tensors may mix dtypes (int8 weights with fp32 scales): slots hold bytes."""

    SLOTS = 2

    def __init__(self, model: nn.Module, device: torch.device, resident: int = 0) -> None:
        self.model = model
        self.device = torch.device(device)
        self.layers = list(model.layers)
        self.host = [[(module, name, getattr(module, name)) for module, name in _parameter_slots(layer)]
                     for layer in self.layers]
        self.resident = max(0, min(resident, len(self.layers)))
        self.streamed = list(range(self.resident, len(self.layers)))
        self.nbytes = max((_packed_bytes(self.host[index]) for index in self.streamed), default=0)
        self._copier = (
            PinnedCopier(self.nbytes, torch.uint8, self.device, buffers=self.SLOTS) if self.streamed else None
        )
        self._slots: list[torch.Tensor] = []
        self._place_resident()
        self._hooks = [model.register_forward_pre_hook(lambda *_: self._begin())]
        for position, index in enumerate(self.streamed):
            self._hooks.append(self.layers[index].register_forward_pre_hook(lambda *_, p=position: self._wait(p)))
            self._hooks.append(self.layers[index].register_forward_hook(lambda *_, p=position: self._done(p)))
        embed = model.get_input_embeddings()
        self._hooks.append(embed.register_forward_pre_hook(lambda _, args: (args[0].cpu(),)))
        self._hooks.append(embed.register_forward_hook(lambda *args: args[-1].to(self.device)))
        for name, child in model.named_children():
            if name not in ("layers", "embed_tokens"):
                child.to(self.device)

    @property
    def slot_bytes(self) -> int:
        return self.SLOTS * self.nbytes if self.streamed else 0

    def _place_resident(self) -> None:
        """Upload the resident layers once, through the pinned path."""
        tensors = {(index, position): tensor for index in range(self.resident)
                   for position, (_, _, tensor) in enumerate(self.host[index])}
        for (index, position), tensor in upload(tensors, self.device).items():
            module, name, _ = self.host[index][position]
            module._parameters[name] = nn.Parameter(tensor, requires_grad=False)

    def _begin(self) -> None:
        """Before a forward pass: make the two GPU slots (freed after the last pass) and start the first streamed
        layers."""
        if not self.streamed:
            return
        if not self._slots:
            self._slots = [torch.empty(self.nbytes, dtype=torch.uint8, device=self.device) for _ in range(self.SLOTS)]
            for position, index in enumerate(self.streamed):
                slot = self._slots[position % self.SLOTS]
                for (module, name, tensor), offset in zip(self.host[index], _packed_offsets(self.host[index])):
                    view = slot[offset : offset + tensor.nbytes].view(tensor.dtype).view(tensor.shape)
                    module._parameters[name] = nn.Parameter(view, requires_grad=False)
        for position in range(min(self.SLOTS, len(self.streamed))):
            self._fetch(position)

    def _fetch(self, position: int) -> None:
        """Copy streamed layer ``position`` into its GPU slot behind the compute stream (packed through its staging
        buffer)."""
        slot = position % self.SLOTS
        layer = self.host[self.streamed[position]]
        copier = self._copier
        assert copier is not None  # only streamed layers are fetched, and a streamer with streamed layers has one
        copier.copy(slot, [_as_bytes(tensor) for _, _, tensor in layer], self._slots[slot],
                          _packed_offsets(layer))

    def _wait(self, position: int) -> None:
        copier = self._copier
        assert copier is not None  # only streamed layers are waited for, and a streamer with streamed layers has one
        copier.wait(position % self.SLOTS)

    def _done(self, position: int) -> None:
        if position + self.SLOTS < len(self.streamed):
            self._fetch(position + self.SLOTS)

    def release(self) -> None:
        """Give the GPU slots back between prompts (the layers' views keep nothing alive once rebound); the resident
        layers stay."""
        if self._copier is not None:
            self._copier.finish()
        self._rebind_host(self.streamed)
        self._slots = []

    def detach(self) -> None:
        """Remove the hooks and put every weight back on the host, as it was before streaming."""
        self.release()
        self._rebind_host(range(self.resident))
        for hook in self._hooks:
            hook.remove()
        for name, child in self.model.named_children():
            if name not in ("layers", "embed_tokens"):
                child.to("cpu")

    def _rebind_host(self, indices) -> None:
        for index in indices:
            for module, name, tensor in self.host[index]:
                module._parameters[name] = tensor


# Where a slot packs tensors of mixed dtypes, each starts on this many bytes (a multiple of every dtype's size).
PACK_ALIGNMENT = 16


def _packed_offsets(layer: list) -> list[int]:
    offsets, offset = [], 0
    for _, _, tensor in layer:
        offsets.append(offset)
        offset += -(-tensor.nbytes // PACK_ALIGNMENT) * PACK_ALIGNMENT
    return offsets


def _packed_bytes(layer: list) -> int:
    return (_packed_offsets(layer)[-1] + layer[-1][2].nbytes) if layer else 0


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().reshape(-1).view(torch.uint8)


class PinnedCopier:
    """Host tensors into GPU memory through pinned staging buffers, copied on a side stream: the CPU packs one buffer
    while the GPU copies the other (pinned copies run about 7x faster than pageable ones, docs/performance.md).
    On a CPU device it copies directly (tests use that)."""

    def __init__(self, numel: int, dtype: torch.dtype, device: torch.device, buffers: int = 2) -> None:
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self._staging = [torch.empty(numel, dtype=dtype, pin_memory=cuda) for _ in range(buffers)]
        self._stream = torch.cuda.Stream(self.device) if cuda else None
        self._ready: list[torch.cuda.Event | None] = [None] * buffers
        self._next_piece = 0

    @property
    def numel(self) -> int:
        return self._staging[0].numel()

    def copy(self, buffer: int, sources: list[torch.Tensor], destination: torch.Tensor,
             offsets: list[int] | None = None) -> None:
        """Pack ``sources`` into staging buffer ``buffer`` (one after another, or each at its element ``offsets``)
        and copy them to the start of the flat ``destination``, behind the work already queued on the current stream
        (which may still read it)."""
        staging = self._staging[buffer]
        previous = self._ready[buffer]
        if previous is not None:
            previous.synchronize()  # this buffer's previous copy to the GPU has finished
        starts: list[int | None] = list(offsets) if offsets else [None] * len(sources)
        offset = 0
        for tensor, start in zip(sources, starts):
            offset = offset if start is None else start
            staging[offset : offset + tensor.numel()].copy_(tensor.reshape(-1))
            offset += tensor.numel()
        if self._stream is None:
            destination[:offset].copy_(staging[:offset])
            return
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._stream):
            self._stream.wait_stream(compute)
            destination[:offset].copy_(staging[:offset], non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        self._ready[buffer] = ready

    def copy_in_pieces(self, source: torch.Tensor, destination: torch.Tensor) -> None:
        """Copy the flat ``source``, however long, into ``destination`` a staging buffer at a time, the buffers taken
        in turn (across calls too), so the CPU packs one piece while the GPU copies the one before."""
        for start in range(0, source.numel(), self.numel):
            end = min(start + self.numel, source.numel())
            self.copy(self._next_piece, [source[start:end]], destination[start:end])
            self._next_piece = (self._next_piece + 1) % len(self._staging)

    def wait(self, buffer: int) -> None:
        """Make the current stream wait for the last copy out of ``buffer``."""
        ready = self._ready[buffer]
        if ready is not None:
            torch.cuda.current_stream(self.device).wait_event(ready)

    def finish(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        self._ready = [None] * len(self._ready)


UPLOAD_STAGING_BYTES = 256 << 20


_Key = TypeVar("_Key")


def upload(tensors: dict[_Key, torch.Tensor], device: torch.device) -> dict[_Key, torch.Tensor]:
    """Copies of ``tensors`` on ``device``, moved through two pinned staging buffers of UPLOAD_STAGING_BYTES: how the
    ``gpu`` plan puts Qwen3's 15 GB on the GPU in well under a second from the page cache (a plain ``.to`` is a
    pageable copy). Tensors of any dtype travel as bytes."""
    device = torch.device(device)
    copier = PinnedCopier(UPLOAD_STAGING_BYTES, torch.uint8, device)
    uploaded: dict[_Key, torch.Tensor] = {}
    for name, tensor in tensors.items():
        target = torch.empty(tensor.shape, dtype=tensor.dtype, device=device)
        copier.copy_in_pieces(tensor.contiguous().reshape(-1).view(torch.uint8), target.reshape(-1).view(torch.uint8))
        uploaded[name] = target
    copier.finish()
    return uploaded


# The dtypes of the safetensors format (its specification's names) that model weights use.
SAFETENSORS_DTYPES = {
    "BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def upload_safetensors(
    paths: list[Path], device: torch.device, rename: Callable[[str], str | None]
) -> dict[str, torch.Tensor]:
    """The tensors of safetensors files on ``device``, keyed by ``rename(key)`` (None skips a tensor), copied as a few
    large byte ranges from the files' memory maps through pinned staging buffers. Unlike :func:`upload`, which works
    tensor by tensor, this needs the GIL only a few times per 256 MB, so a thread can copy 15 GB while the main
    thread spends seconds importing Python modules (``EarlyQwenUpload``). Each tensor is a view into its range's
    buffer."""
    device = torch.device(device)
    copier = PinnedCopier(UPLOAD_STAGING_BYTES, torch.uint8, device)
    placed = []
    for path in paths:
        data_start, entries = read_safetensors_header(path)
        kept = sorted(
            ((entry["data_offsets"], name, entry) for key, entry in entries.items() if (name := rename(key))),
            key=lambda item: item[0][0],
        )
        size = data_start + max((end for (_, end), _, _ in kept), default=0)
        mapped = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage.from_file(str(path), False, size))
        for run in _contiguous_runs(kept):
            start, end = run[0][0][0], run[-1][0][1]
            flat = torch.empty(end - start, dtype=torch.uint8, device=device)
            copier.copy_in_pieces(mapped[data_start + start : data_start + end], flat)
            placed += [(name, flat[begin - start : finish - start], entry) for (begin, finish), name, entry in run]
    copier.finish()
    uploaded = {}
    for name, piece, entry in placed:
        dtype = SAFETENSORS_DTYPES[entry["dtype"]]
        if piece.storage_offset() % dtype.itemsize:
            piece = piece.clone()  # a typed view must start on an element boundary
        uploaded[name] = piece.view(dtype).view(entry["shape"])
    return uploaded


def _contiguous_runs(kept: list) -> list[list]:
    """Entries sorted by offset, grouped where each one starts where the previous one ended."""
    runs: list[list] = []
    for item in kept:
        if runs and runs[-1][-1][0][1] == item[0][0]:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _parameter_slots(layer: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(module, name) for module in layer.modules() for name, value in module._parameters.items()
            if value is not None]
