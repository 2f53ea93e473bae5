"""The HY-Motion MMDiT, written for inference: one file, parameter names identical to the official checkpoints.

Parameter names follow the official ``motion_transformer.*`` keys so a released ``latest.ckpt`` loads with a strict key
check. The forward pass differs from the official one only in what it avoids computing: it takes any number of motion
frames and text tokens, keeps the official RoPE positions (text tokens start at position ``train_frames``), and builds
masks and rotary tables once per shape (:class:`AttentionLayout`), so a trimmed run equals the official 360-frame,
128-token padded run and the denoising loop can be captured in a CUDA graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from ..shared.skeleton import FPS

NORM_EPS = 1e-6
ROPE_THETA = 10000.0
OFFICIAL_TRAIN_FRAMES = 360


class RMSNorm(nn.Module):
    """q/k RMS norm with a learned scale; only ever applied through :func:`norm_and_rope`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))


class Modulation(nn.Module):
    """SiLU then Linear producing ``factor`` chunks (shift/scale/gate); zero-initialised in the official code."""

    def __init__(self, dim: int, factor: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, factor * dim)

    def forward(self, adapter: Tensor) -> Tensor:
        return self.linear(F.silu(adapter))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: nn.Module) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MLPEncoder(nn.Module):
    """Linear, SiLU, Linear; kept as a Sequential so the keys read ``linears.0`` and ``linears.2``."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linears = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.linears(x)


class TimestepEncoder(nn.Module):
    """Sinusoidal embedding (cos half, then sin half) of ``t * time_factor`` through Linear-SiLU-Linear."""

    def __init__(self, dim: int, time_factor: float) -> None:
        super().__init__()
        self.dim = dim
        self.time_factor = time_factor
        self.blocks = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = (t.float() * self.time_factor)[:, None] * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.dim % 2:
            embedding = F.pad(embedding, (0, 1))
        return self.blocks(embedding.to(self.blocks[0].weight.dtype)).unsqueeze(1)


def split_heads(qkv: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, L, 3·H·D) laid out as "(K H D)" to three (B, H, L, D) tensors."""
    batch, length, _ = qkv.shape
    q, k, v = qkv.view(batch, length, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


def merge_heads(x: Tensor) -> Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


def norm_and_rope(norm: RMSNorm, x: Tensor, rotation: Tensor) -> Tensor:
    """RMS norm then RoPE over interleaved pairs, (x0, x1) -> (x0·cos − x1·sin, x1·cos + x0·sin), in float32.

    The reference rounds to the model dtype between the norm, its scale and the rotation; here there is one rounding
    at the end (identical in float32, within one bf16 rounding in bf16) and the rotation is one complex product, so
    the pair costs four kernels instead of fourteen.
    """
    normed = F.rms_norm(x.float(), (x.shape[-1],), weight=norm.weight.float(), eps=NORM_EPS)
    pairs = torch.view_as_complex(normed.unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)


def rope_table(positions: Tensor, head_dim: int) -> Tensor:
    """(L, head_dim / 2) unit complex numbers e^{i·pos·θ_k}, θ_k = 10000^(−2k/head_dim)."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim
    freqs = torch.outer(positions.float(), 1.0 / (ROPE_THETA**exponent))
    return torch.polar(torch.ones_like(freqs), freqs)


@dataclass
class AttentionLayout:
    """Everything about a batch's shape that the blocks need, built once and reused for every sampling step."""

    joint_mask: Tensor  # (B, 1, M+T, M+T) additive float mask for double and single blocks
    refiner_mask: Tensor  # (B, 1, T, T) additive float mask for the token refiner
    text_valid: Tensor  # (B, T) bool
    rope: Tensor  # (M+T, head_dim / 2) complex64
    motion_len: int

    @classmethod
    def build(
        cls,
        motion_valid: Tensor,
        text_valid: Tensor,
        head_dim: int,
        band: int,
        dtype: torch.dtype,
        text_position_offset: int = OFFICIAL_TRAIN_FRAMES,
    ) -> "AttentionLayout":
        device = motion_valid.device
        batch, motion_len = motion_valid.shape
        text_len = text_valid.shape[1]
        frame = torch.arange(motion_len, device=device)
        in_band = (frame[None, :] - frame[:, None]).abs() <= band
        allowed = torch.ones(batch, motion_len + text_len, motion_len + text_len, dtype=torch.bool, device=device)
        allowed[:, :motion_len, :motion_len] = in_band
        allowed[:, motion_len:, :motion_len] = False
        key_valid = torch.cat([motion_valid, text_valid], dim=1)
        allowed &= key_valid[:, None, :]
        joint_mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, float("-inf"))

        pair_valid = text_valid[:, :, None] & text_valid[:, None, :]
        lonely_rows = ~pair_valid.any(dim=-1, keepdim=True)
        eye = torch.eye(text_len, dtype=torch.bool, device=device)[None]
        refiner_allowed = torch.where(lonely_rows, eye, pair_valid)
        refiner_mask = torch.zeros(refiner_allowed.shape, dtype=dtype, device=device)
        refiner_mask = refiner_mask.masked_fill(~refiner_allowed, float("-inf"))

        positions = torch.cat([frame, text_position_offset + torch.arange(text_len, device=device)])
        return cls(joint_mask[:, None], refiner_mask[:, None], text_valid, rope_table(positions, head_dim), motion_len)


class TokenRefinerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.self_attn_qkv = nn.Linear(dim, 3 * dim)
        self.self_attn_q_norm = nn.LayerNorm(head_dim, eps=NORM_EPS)
        self.self_attn_k_norm = nn.LayerNorm(head_dim, eps=NORM_EPS)
        self.self_attn_proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = MLP(dim, int(dim * mlp_ratio), nn.SiLU())
        self.adaLN_modulation = Modulation(dim, 2)

    def forward(self, x: Tensor, c: Tensor, mask: Tensor) -> Tensor:
        gate_msa, gate_mlp = self.adaLN_modulation(c).chunk(2, dim=-1)
        q, k, v = split_heads(self.self_attn_qkv(self.norm1(x)), self.num_heads)
        q, k = self.self_attn_q_norm(q), self.self_attn_k_norm(k)
        attn = merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        x = gated(x, gate_msa, self.self_attn_proj(attn))
        return gated(x, gate_mlp, self.mlp(self.norm2(x)))


class IndividualTokenRefiner(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_layers: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TokenRefinerBlock(dim, num_heads, mlp_ratio) for _ in range(num_layers))


class TextRefiner(nn.Module):
    """Refines the projected Qwen tokens, conditioned on the timestep and the masked mean of the tokens."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, mlp_ratio: float) -> None:
        super().__init__()
        self.input_embedder = nn.Linear(dim, dim)
        self.context_encoder = MLPEncoder(dim, dim)
        self.timestep_encoder = TimestepEncoder(dim, time_factor=1.0)
        self.individual_token_refiner = IndividualTokenRefiner(dim, num_heads, num_layers, mlp_ratio)

    def forward(self, x: Tensor, t: Tensor, layout: AttentionLayout) -> Tensor:
        weights = layout.text_valid.to(x.dtype).unsqueeze(-1)
        context = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(NORM_EPS)
        c = self.timestep_encoder(t) + self.context_encoder(context).unsqueeze(1)
        x = self.input_embedder(x)
        for block in self.individual_token_refiner.blocks:
            x = block(x, c, layout.refiner_mask)
        return x


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x·(1 + scale) + shift, fused into one kernel over x."""
    return torch.addcmul(shift, x, 1 + scale)


def gated(x: Tensor, gate: Tensor, update: Tensor) -> Tensor:
    """x + gate·update, fused into one kernel."""
    return torch.addcmul(x, gate, update)


class DoubleStreamBlock(nn.Module):
    """Separate motion and text weights, one joint attention over [motion; text]."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        hidden = int(dim * mlp_ratio)
        for stream in ("motion", "text"):
            setattr(self, f"{stream}_mod", Modulation(dim, 6))
            setattr(self, f"{stream}_norm1", nn.LayerNorm(dim, elementwise_affine=False, eps=NORM_EPS))
            setattr(self, f"{stream}_qkv", nn.Linear(dim, 3 * dim))
            setattr(self, f"{stream}_q_norm", RMSNorm(head_dim))
            setattr(self, f"{stream}_k_norm", RMSNorm(head_dim))
            setattr(self, f"{stream}_out_proj", nn.Linear(dim, dim))
            setattr(self, f"{stream}_norm2", nn.LayerNorm(dim, elementwise_affine=False, eps=NORM_EPS))
            setattr(self, f"{stream}_mlp", MLP(dim, hidden, nn.GELU(approximate="tanh")))

    def _qkv(
        self, stream: str, x: Tensor, shift: Tensor, scale: Tensor, rotation: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        normed = modulate(getattr(self, f"{stream}_norm1")(x), shift, scale)
        q, k, v = split_heads(getattr(self, f"{stream}_qkv")(normed), self.num_heads)
        q = norm_and_rope(getattr(self, f"{stream}_q_norm"), q, rotation)
        return q, norm_and_rope(getattr(self, f"{stream}_k_norm"), k, rotation), v

    def _finish(self, stream: str, x: Tensor, attn: Tensor, chunks: tuple[Tensor, ...]) -> Tensor:
        _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = chunks
        x = gated(x, gate_msa, getattr(self, f"{stream}_out_proj")(attn))
        mlp_in = modulate(getattr(self, f"{stream}_norm2")(x), shift_mlp, scale_mlp)
        return gated(x, gate_mlp, getattr(self, f"{stream}_mlp")(mlp_in))

    def forward(self, motion: Tensor, text: Tensor, adapter: Tensor, layout: AttentionLayout) -> tuple[Tensor, Tensor]:
        motion_chunks = self.motion_mod(adapter).chunk(6, dim=-1)
        text_chunks = self.text_mod(adapter).chunk(6, dim=-1)
        split = layout.motion_len
        mq, mk, mv = self._qkv("motion", motion, motion_chunks[0], motion_chunks[1], layout.rope[:split])
        tq, tk, tv = self._qkv("text", text, text_chunks[0], text_chunks[1], layout.rope[split:])
        q, k, v = (torch.cat(pair, dim=2) for pair in ((mq, tq), (mk, tk), (mv, tv)))
        attn = merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=layout.joint_mask))
        motion = self._finish("motion", motion, attn[:, :split], motion_chunks)
        text = self._finish("text", text, attn[:, split:], text_chunks)
        return motion, text


class SingleStreamBlock(nn.Module):
    """Shared weights over [motion; text]: one Linear for qkv + MLP-in, one for attention-out + MLP-out."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dim = dim
        self.hidden = int(dim * mlp_ratio)
        head_dim = dim // num_heads
        self.modulation = Modulation(dim, 3)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=NORM_EPS)
        self.linear1 = nn.Linear(dim, 3 * dim + self.hidden)
        self.linear2 = nn.Linear(dim + self.hidden, dim)
        self.q_norm = RMSNorm(head_dim)
        self.k_norm = RMSNorm(head_dim)
        self.mlp_act = nn.GELU(approximate="tanh")

    def forward(self, x: Tensor, adapter: Tensor, layout: AttentionLayout) -> Tensor:
        shift, scale, gate = self.modulation(adapter).chunk(3, dim=-1)
        qkv, mlp_in = self.linear1(modulate(self.norm(x), shift, scale)).split([3 * self.dim, self.hidden], dim=-1)
        q, k, v = split_heads(qkv, self.num_heads)
        q = norm_and_rope(self.q_norm, q, layout.rope)
        k = norm_and_rope(self.k_norm, k, layout.rope)
        attn = merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=layout.joint_mask))
        return gated(x, gate, self.linear2(torch.cat([attn, self.mlp_act(mlp_in)], dim=-1)))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=NORM_EPS)
        self.adaLN_modulation = Modulation(dim, 2)
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor, adapter: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(adapter).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class HunyuanMotionMMDiT(ModelMixin, ConfigMixin):
    """Predicts the flow-matching velocity of a (B, frames, 201) motion latent given text and a timestep."""

    config_name = "config.json"
    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        input_dim: int = 201,
        output_dim: int = 201,
        feat_dim: int = 1024,
        ctxt_input_dim: int = 4096,
        vtxt_input_dim: int = 768,
        num_layers: int = 18,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        refiner_num_layers: int = 2,
        time_factor: float = 1000.0,
        narrowband_length: float = 2.0,
        train_frames: int = OFFICIAL_TRAIN_FRAMES,
    ) -> None:
        super().__init__()
        if feat_dim % num_heads or (feat_dim // num_heads) % 2:
            raise ValueError(f"feat_dim {feat_dim} must split into {num_heads} heads of even size")
        if num_layers % 3:
            raise ValueError(f"num_layers must be divisible by 3 (a third are double-stream blocks), got {num_layers}")
        self.head_dim = feat_dim // num_heads
        self.band = int(round(narrowband_length * FPS))
        self.input_encoder = nn.Linear(input_dim, feat_dim)
        self.ctxt_encoder = nn.Linear(ctxt_input_dim, feat_dim)
        self.vtxt_encoder = MLPEncoder(vtxt_input_dim, feat_dim)
        self.timestep_encoder = TimestepEncoder(feat_dim, time_factor)
        self.text_refiner = TextRefiner(feat_dim, num_heads, refiner_num_layers, mlp_ratio)
        double = num_layers // 3
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(feat_dim, num_heads, mlp_ratio) for _ in range(double))
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(feat_dim, num_heads, mlp_ratio) for _ in range(num_layers - double)
        )
        self.final_layer = FinalLayer(feat_dim, output_dim)

    def build_layout(self, motion_valid: Tensor, text_valid: Tensor) -> AttentionLayout:
        return AttentionLayout.build(
            motion_valid, text_valid, self.head_dim, self.band, self.dtype, self.config.train_frames
        )

    def forward(
        self,
        x: Tensor,
        ctxt_input: Tensor,
        vtxt_input: Tensor,
        timesteps: Tensor,
        layout: AttentionLayout,
    ) -> Tensor:
        """x (B, M, 201), ctxt_input (B, T, 4096), vtxt_input (B, 1, 768), timesteps (B,) in [0, 1]."""
        dtype = self.dtype
        motion = self.input_encoder(x.to(dtype))
        adapter = self.timestep_encoder(timesteps) + self.vtxt_encoder(vtxt_input.to(dtype))
        text = self.text_refiner(self.ctxt_encoder(ctxt_input.to(dtype)), timesteps, layout)
        for block in self.double_blocks:
            motion, text = block(motion, text, adapter, layout)
        joint = torch.cat([motion, text], dim=1)
        for block in self.single_blocks:
            joint = block(joint, adapter, layout)
        return self.final_layer(joint[:, : layout.motion_len], adapter)
