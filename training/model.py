"""The Video2Roll-style network: 5 grayscale frames of the keyboard crop -> one logit per key.

The layout of Audeo's Video2Roll Net, on torchvision's ResNet-18 (no pretrained weights):
a 5-channel first convolution, the four residual stages, FPN-style top-down fusion of
stages 2-4 where each level is reweighted by channel attention (squeeze-excitation) and
spatial attention, then pooling and a linear head to the keys.

Head (`head`): "keys" (default) averages the fused map over the crop's height, then over
each key's columns (the rectified crop puts key k where the 88-key layout says), and
scores every key with one linear layer shared by all white keys and one by all black keys,
plus a bias per key: a key pressed in no training frame is still read by the same
detector. "global" pools over the whole map and maps it to the keys with one linear layer,
as Audeo does, leaving key position to the channels.

Frames come in as uint8 (what the readers yield, a quarter of the bytes between processes)
and are scaled to [0, 1] here.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contract.piano import key_layout
from training.data import key_range

FUSED_CHANNELS = 128
HEAD_CHANNELS = 32
HEADS = ("keys", "global")


class ChannelAttention(nn.Module):
    """Squeeze-excitation: reweight channels from their global averages."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc(x.mean(dim=(2, 3))))
        return x * weights[:, :, None, None]


class SpatialAttention(nn.Module):
    """Reweight positions from the channel mean and max (CBAM's spatial gate)."""

    def __init__(self, kernel: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summary = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(summary))


@lru_cache(maxsize=8)
def key_columns(columns: int, lo: int, hi: int) -> torch.Tensor:
    """(columns, keys) weights that average a row of `columns` cells over each key's x extent."""
    left, right = key_layout().normalised()
    edges = np.arange(columns + 1) / columns
    overlap = np.clip(np.minimum(edges[1:, None], right[None, lo:hi]) - np.maximum(edges[:-1, None], left[None, lo:hi]),
                      0, None)
    return torch.from_numpy(overlap / overlap.sum(axis=0, keepdims=True)).float()


class KeyHead(nn.Module):
    """Scores each key from the features over its columns, with one detector per key colour."""

    def __init__(self, channels: int, lo: int, hi: int):
        super().__init__()
        self.lo, self.hi = lo, hi
        self.context = nn.Sequential(nn.Conv1d(channels, HEAD_CHANNELS, 3, padding=1), nn.ReLU(inplace=True))
        self.register_buffer("black", torch.from_numpy(key_layout().black[lo:hi].astype(np.int64)), persistent=False)
        self.detector = nn.Parameter(torch.randn(2, HEAD_CHANNELS) / HEAD_CHANNELS ** 0.5)  # white, black
        self.bias = nn.Parameter(torch.zeros(hi - lo))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """rows: (batch, channels, columns) -> logits (batch, keys); the key-column weights
        follow the width the input gives the fused map."""
        weights = key_columns(rows.shape[2], self.lo, self.hi).to(rows.device)
        per_key = self.context(rows) @ weights  # (batch, channels, keys)
        return (per_key * self.detector[self.black].T).sum(dim=1) + self.bias


def key_head(channels: int, lo: int, hi: int, kind: str) -> nn.Module:
    """The head that scores keys lo..hi-1 from a fused feature map (`HEADS`: see above)."""
    if kind not in HEADS:
        raise ValueError(f"head {kind!r}: expected one of {', '.join(HEADS)}")
    return nn.Linear(channels, hi - lo) if kind == "global" else KeyHead(channels, lo, hi)


def read_keys(head: nn.Module, kind: str, fused: torch.Tensor) -> torch.Tensor:
    """(batch, channels, height, width) -> logits (batch, keys): "global" pools the whole
    map, "keys" only its height (the head reads each key at its own columns)."""
    return head(fused.mean(dim=(2, 3))) if kind == "global" else head(fused.mean(dim=2))


def unit_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames (what the readers yield) as floats in [0, 1]; float frames as they are."""
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames


class Video2Roll(nn.Module):
    def __init__(self, keys: str = "88", n_frames: int = 5, size: tuple[int, int] = (100, 900), head: str = "keys"):
        from torchvision.models import resnet18

        super().__init__()
        lo, hi = key_range(keys)
        self.keys, self.n_keys, self.n_frames, self.size, self.head_kind = keys, hi - lo, n_frames, tuple(size), head
        trunk = resnet18(weights=None)
        self.stem = nn.Sequential(nn.Conv2d(n_frames, 64, kernel_size=7, stride=2, padding=3, bias=False),
                                  trunk.bn1, trunk.relu, trunk.maxpool)
        self.stages = nn.ModuleList([trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4])
        self.lateral = nn.ModuleList([nn.Conv2d(c, FUSED_CHANNELS, 1) for c in (128, 256, 512)])
        self.attend = nn.ModuleList([nn.Sequential(ChannelAttention(FUSED_CHANNELS), SpatialAttention())
                                     for _ in range(3)])
        self.head = key_head(FUSED_CHANNELS, lo, hi, head)

    def _fused(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.stem(frames)
        levels = []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        fused = None
        for lateral, attend, level in zip(reversed(self.lateral), reversed(self.attend), reversed(levels[1:])):
            x = lateral(level)
            if fused is not None:  # top-down: the coarser level, upsampled, joins the finer one
                x = x + F.interpolate(fused, size=x.shape[2:], mode="bilinear", align_corners=False)
            fused = attend(x)
        return fused

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (batch, 5, H, W), uint8 or float in [0, 1]; returns logits (batch, n_keys)."""
        return read_keys(self.head, self.head_kind, self._fused(unit_frames(frames)))

    def spec(self) -> dict:
        """What rebuilds this network (stored in checkpoints)."""
        return {"keys": self.keys, "n_frames": self.n_frames, "size": list(self.size), "head": self.head_kind}
