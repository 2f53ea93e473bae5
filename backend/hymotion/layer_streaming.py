"""The ``stream`` plan's engine: Qwen3's decoder layers run on the GPU while their weights stay in host memory.

The host weights are the memory-mapped safetensors files themselves (``model/qwen_files.py``), so they live in the
page cache (file-backed, evictable) rather than in the process's own memory. Per forward pass each layer is copied
into one of two GPU slots: the CPU packs layer i+2 into a pinned staging buffer while a side CUDA stream copies layer
i+1 into its slot and the default stream computes layer i, so copying and computing overlap and the GPU holds two
layers (about 0.8 GB for Qwen3-8B) instead of 36. The token embedding table (1.2 GB) stays on the host: a prompt
needs only its own rows, looked up there and sent over.

Every layer's parameters are permanent views into its slot (layers i and i+2 share one), so no parameter is ever
re-bound during a pass. On a CPU device the same code runs without streams or pinned memory (tests use that).
"""

from __future__ import annotations

import torch
from torch import nn


class LayerStreamer:
    """Streams ``model.layers`` through ``device``; :meth:`detach` gives the model its host weights back."""

    SLOTS = 2

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model
        self.device = torch.device(device)
        self.layers = list(model.layers)
        self.host = [[(module, name, getattr(module, name)) for module, name in _parameter_slots(layer)]
                     for layer in self.layers]
        dtypes = {tensor.dtype for layer in self.host for _, _, tensor in layer}
        if len(dtypes) != 1:
            raise ValueError(f"streamed layers must share one dtype, found {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()
        self.numel = max(sum(tensor.numel() for _, _, tensor in layer) for layer in self.host)
        cuda = self.device.type == "cuda"
        self._staging = [torch.empty(self.numel, dtype=self.dtype, pin_memory=cuda) for _ in range(self.SLOTS)]
        self._copy_stream = torch.cuda.Stream(self.device) if cuda else None
        self._slots: list[torch.Tensor] = []
        self._ready: list[torch.cuda.Event | None] = [None] * self.SLOTS
        self._hooks = [model.register_forward_pre_hook(lambda *_: self._begin())]
        for index, layer in enumerate(self.layers):
            self._hooks.append(layer.register_forward_pre_hook(lambda *_, i=index: self._wait(i)))
            self._hooks.append(layer.register_forward_hook(lambda *_, i=index: self._done(i)))
        embed = model.get_input_embeddings()
        self._hooks.append(embed.register_forward_pre_hook(lambda _, args: (args[0].cpu(),)))
        self._hooks.append(embed.register_forward_hook(lambda *args: args[-1].to(self.device)))
        for name, child in model.named_children():
            if name not in ("layers", "embed_tokens"):
                child.to(self.device)

    @property
    def slot_bytes(self) -> int:
        return self.SLOTS * self.numel * self.dtype.itemsize

    def _begin(self) -> None:
        """Before a forward pass: make the two GPU slots (freed after the last pass) and start the first layers."""
        if not self._slots:
            self._slots = [torch.empty(self.numel, dtype=self.dtype, device=self.device) for _ in range(self.SLOTS)]
            for index, layer in enumerate(self.host):
                slot, offset = self._slots[index % self.SLOTS], 0
                for module, name, tensor in layer:
                    view = slot[offset : offset + tensor.numel()].view(tensor.shape)
                    module._parameters[name] = nn.Parameter(view, requires_grad=False)
                    offset += tensor.numel()
        for index in range(min(self.SLOTS, len(self.layers))):
            self._fetch(index)

    def _fetch(self, index: int) -> None:
        """Pack layer ``index`` into its staging buffer and copy it into its GPU slot behind the compute stream."""
        slot = index % self.SLOTS
        staging = self._staging[slot]
        if self._ready[slot] is not None:
            self._ready[slot].synchronize()  # the staging buffer's previous copy to the GPU has finished
        offset = 0
        for _, _, tensor in self.host[index]:
            staging[offset : offset + tensor.numel()].copy_(tensor.reshape(-1))
            offset += tensor.numel()
        if self._copy_stream is None:
            self._slots[slot][:offset].copy_(staging[:offset])
            return
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            self._copy_stream.wait_stream(compute)  # the slot's previous layer has finished computing
            self._slots[slot][:offset].copy_(staging[:offset], non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self._copy_stream)
        self._ready[slot] = ready

    def _wait(self, index: int) -> None:
        ready = self._ready[index % self.SLOTS]
        if ready is not None:
            torch.cuda.current_stream(self.device).wait_event(ready)

    def _done(self, index: int) -> None:
        if index + self.SLOTS < len(self.layers):
            self._fetch(index + self.SLOTS)

    def release(self) -> None:
        """Give the GPU slots back between prompts (the layers' views keep nothing alive once rebound)."""
        if self._copy_stream is not None:
            self._copy_stream.synchronize()
        self._rebind_host()
        self._slots = []
        self._ready = [None] * self.SLOTS

    def detach(self) -> None:
        """Remove the hooks and put every weight back on the host, as it was before streaming."""
        self.release()
        for hook in self._hooks:
            hook.remove()
        for name, child in self.model.named_children():
            if name not in ("layers", "embed_tokens"):
                child.to("cpu")

    def _rebind_host(self) -> None:
        for layer in self.host:
            for module, name, tensor in layer:
                module._parameters[name] = tensor


def _parameter_slots(layer: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(module, name) for module in layer.modules() for name, value in module._parameters.items()
            if value is not None]
