"""The InstanceDiffusion position net (official class ``UniFusion``, attribute ``position_net``; spec §1.4).

Turns the per-instance grounding tensors of :mod:`.inputs` into ``objs`` [B, 184, 768]:
30 box + 30 point + 30 scribble + 30 polygon tokens + 64 mask (ConvNeXt) tokens. The modality drop flags are
given, never drawn: an inference preset, or per-sample training draws from :mod:`.training_inputs`. Run it once per sampling run and cache ``objs``; never per block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..fourier import fourier_features
from .convnext import ConvNeXt, features_to_tokens

MAX_OBJS = 30
N_SEG_TOKENS = 64


class FourierEmbedder:
    """[..., D] -> [..., 2·num_freqs·D] = cat over k of [sin(f_k x), cos(f_k x)], f_k = temperature^(k/num_freqs)."""

    def __init__(self, num_freqs: int = 16, temperature: float = 100.0) -> None:
        self.num_freqs = num_freqs
        self.temperature = temperature

    @property
    def freq_bands(self) -> list[float]:
        """The frequencies f_k (float32 values, as the official tensor)."""
        return [float(f) for f in self.temperature ** (torch.arange(self.num_freqs, dtype=torch.float32) / self.num_freqs)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return fourier_features(x, self.num_freqs, self.temperature).to(x.dtype)


@dataclass(frozen=True)
class DropFlags:
    """Inference modality flags (official ``test_drop_*``; True = replaced by the null embedding)."""

    boxes: bool = False
    points: bool = False
    scribbles: bool = False
    masks: bool = False  # polygons and segs together

    def as_tensor(self) -> torch.Tensor:
        """[4] bool in the order (boxes, points, scribbles, masks), for the inputs dict key ``drop``."""
        return torch.tensor([self.boxes, self.points, self.scribbles, self.masks])

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> DropFlags:
        v = [bool(x) for x in t.reshape(-1).tolist()]
        if len(v) != 4:
            raise ValueError(f"drop flags: expected 4 values (boxes, points, scribbles, masks), got {len(v)}")
        return cls(*v)


def _mlp(in_dim: int, mid_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, mid_dim), nn.SiLU(), nn.Linear(mid_dim, mid_dim), nn.SiLU(), nn.Linear(mid_dim, out_dim)
    )


class PositionNet(nn.Module):
    """Official ``UniFusion`` with ``use_seperate_tokenizer=True`` and all four ``train_add_*`` on.

    Keys: ``linears_list.{0..4}``, ``null_{positive,position,point,scribble,polygon,seg}_feature``, ``pos_embedding``,
    ``in_conv``, ``convnext_tiny_backbone``. Smaller widths are only for tests (``fourier_freqs``, ``mid_dim``, ...);
    the checkpoint uses the defaults.
    """

    def __init__(
        self,
        in_dim: int = 768,
        out_dim: int = 768,
        mid_dim: int = 3072,
        fourier_freqs: int = 16,
        max_objs: int = MAX_OBJS,
        n_polygon_points: int = 256,
        n_scribble_points: int = 20,
        convnext_depths: tuple[int, ...] = (3, 3, 9, 3),
        convnext_dims: tuple[int, ...] = (96, 192, 384, 768),
        seg_size: int = 512,
    ) -> None:
        super().__init__()
        self.max_objs = max_objs
        self.seg_size = seg_size
        self.fourier = FourierEmbedder(fourier_freqs, 100.0)
        w = fourier_freqs * 2
        box_dim, point_dim = w * 4, w * 2
        scribble_dim, polygon_dim = w * 2 * n_scribble_points, w * 2 * n_polygon_points
        feat_hw = seg_size // 32
        seg_dim = convnext_dims[-1] * feat_hw * feat_hw // N_SEG_TOKENS
        self.linears_list = nn.ModuleList(
            [_mlp(in_dim + d, mid_dim, out_dim) for d in (box_dim, point_dim, scribble_dim, polygon_dim)]
            + [_mlp(seg_dim, mid_dim, out_dim)]
        )
        self.null_positive_feature = nn.Parameter(torch.zeros(in_dim))
        self.null_position_feature = nn.Parameter(torch.zeros(box_dim))
        self.null_point_feature = nn.Parameter(torch.zeros(point_dim))
        self.null_scribble_feature = nn.Parameter(torch.zeros(scribble_dim))
        self.null_polygon_feature = nn.Parameter(torch.zeros(polygon_dim))
        self.null_seg_feature = nn.Parameter(torch.zeros(seg_dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, N_SEG_TOKENS, seg_dim))
        self.in_conv = nn.Conv2d(max_objs, 3, kernel_size=3, padding=1)
        self.convnext_tiny_backbone = ConvNeXt(3, convnext_depths, convnext_dims)

    def forward(self, inputs: dict[str, torch.Tensor], drop: DropFlags | torch.Tensor | None = None) -> torch.Tensor:
        """Grounding tokens.

        inputs (see :func:`.inputs.prepare_inputs`): ``boxes`` [B,30,4], ``masks`` [B,30], ``positive_embeddings``
        [B,30,768], ``points`` [B,30,2], ``scribbles`` [B,30,40], ``polygons`` [B,30,512], ``segs`` [B,30,512,512],
        optional ``drop`` [4] bool. ``drop`` (argument) overrides ``inputs["drop"]``; default: nothing dropped.
        ``drop`` may also be a bool tensor [B, 4] (boxes, points, scribbles, masks) of per-sample flags, as training
        draws them (:func:`.training_inputs.draw_modality_drop`); a row with all four set keeps its boxes.
        Returns objs [B, 4·30 + 64, 768] in the module's dtype.
        """
        if drop is None:
            drop = DropFlags.from_tensor(inputs["drop"]) if "drop" in inputs else DropFlags()
        p = self.null_positive_feature
        dt, dev = p.dtype, p.device
        b = inputs["masks"].shape[0]
        if isinstance(drop, DropFlags):
            flags = drop.as_tensor().view(1, 4).expand(b, 4)
        else:
            flags = torch.as_tensor(drop, dtype=torch.bool).reshape(-1, 4).expand(b, 4)
        flags = flags.clone()
        flags[:, 0] &= ~flags.all(dim=1)  # official: if every modality is dropped, boxes are forced back on
        keep = (~flags).to(device=dev, dtype=dt).view(b, 4, 1, 1)  # 1 = this kind is used for this sample

        def get(name: str) -> torch.Tensor:
            return inputs[name].to(device=dev, dtype=dt)

        m = get("masks").unsqueeze(-1)  # [B,30,1]
        text = get("positive_embeddings")
        text = text * m + (1 - m) * self.null_positive_feature.view(1, 1, -1)

        boxes = get("boxes")
        points = inputs.get("points")
        if points is None:  # official default; prepare_inputs always provides points
            points = (boxes[..., :2] + boxes[..., 2:]) / 2
        points = points.to(device=dev, dtype=dt)
        scribbles, polygons = get("scribbles"), get("polygons")

        def mix(feat: torch.Tensor, null: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return feat * k + (1 - k) * null.view(1, 1, -1)

        box_tok = mix(self.fourier(boxes), self.null_position_feature, m * keep[:, 0])
        point_tok = mix(self.fourier(points), self.null_point_feature, m * keep[:, 1])
        # scribble/polygon: a real slot counts as present even if its coordinates are all zero (official rule)
        k_scr = ((scribbles.sum(-1, keepdim=True) + m) > 0).to(dt)
        k_pol = ((polygons.sum(-1, keepdim=True) + m) > 0).to(dt)
        scribble_tok = mix(self.fourier(scribbles), self.null_scribble_feature, k_scr * keep[:, 2])
        polygon_tok = mix(self.fourier(polygons), self.null_polygon_feature, k_pol * keep[:, 3])

        segs = get("segs")
        k_seg = (segs.reshape(b, -1).sum(-1) > 0).to(dt).view(b, 1, 1) * keep[:, 3]
        if not self.training and not bool(k_seg.any()):
            # features are multiplied by 0; skip the ConvNeXt (identical result, unless it produced inf/nan). Training
            # always runs it, as the official code does, so every parameter takes part in every step (DDP).
            seg_feat = torch.zeros(b, N_SEG_TOKENS, self.null_seg_feature.shape[0], dtype=dt, device=dev)
        else:
            seg_feat = self.encode_segs(segs)
        seg_tok = seg_feat * k_seg + (1 - k_seg) * self.null_seg_feature.view(1, 1, -1)
        seg_tok = seg_tok + self.pos_embedding

        toks = [
            self.linears_list[0](torch.cat([text, box_tok], dim=-1)),
            self.linears_list[1](torch.cat([text, point_tok], dim=-1)),
            self.linears_list[2](torch.cat([text, scribble_tok], dim=-1)),
            self.linears_list[3](torch.cat([text, polygon_tok], dim=-1)),
            self.linears_list[4](seg_tok),
        ]
        return torch.cat(toks, dim=1)

    def encode_segs(self, segs: torch.Tensor) -> torch.Tensor:
        """segs [B,30,S,S] -> nearest resize to 512 -> in_conv -> ConvNeXt -> raw reshape -> [B, 64, 3072]."""
        if segs.shape[-2:] != (self.seg_size, self.seg_size):
            segs = F.interpolate(segs, size=(self.seg_size, self.seg_size), mode="nearest")
        feat = self.convnext_tiny_backbone(self.in_conv(segs))
        return features_to_tokens(feat, N_SEG_TOKENS)
