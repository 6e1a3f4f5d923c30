"""Parameter names of the official Flax NCSN++ and how each maps onto ``cmlearn.nets.ncsnpp.NCSNpp``.

The paper's CIFAR-10 checkpoints (openai/consistency_models_cifar10) hold the parameters of the Flax module
``NCSNpp`` in jcm/models/ncsnpp.py, built from jcm/models/layerspp.py, layers.py and up_or_down_sampling.py. Flax
names every submodule created in a ``@nn.compact`` method ``{ClassName}_{k}``, k counting per class name inside its
parent in creation order, so the names follow from replaying ``NCSNpp.__call__`` with the paper's config
(progressive "none", progressive_input "residual", resblock_type "biggan", fourier embedding, conditional):

=============================================  ==========================================  ======================
official (Flax)                                 cmlearn                                    layout change
=============================================  ==========================================  ======================
GaussianFourierProjection_0/W  (nf,)            fourier.freqs (a buffer here)              none
Dense_0, Dense_1  kernel (in, out), bias        emb0, emb1  weight (out, in), bias         transpose
Conv_0  kernel (3, 3, 3, nf)                    conv_in  weight (nf, 3, 3, 3)              HWIO -> OIHW
ResnetBlockBigGANpp_k / GroupNorm_0, Conv_0,    <block> norm0, conv0, emb, norm1, conv1,   GroupNorm scale ->
  Dense_0, GroupNorm_1, Conv_1, [Conv_2]          [skip (1x1)]                              weight
AttnBlockpp_k / GroupNorm_0, NIN_0..NIN_3       <block>.attn norm, qkv = [NIN_0; NIN_1;    NIN W (in, out) ->
  (q, k, v, out; NIN params W, b)                 NIN_2], proj = NIN_3                      1x1 conv (out, in)
Downsample_k / Conv2d_0 / weight (3,3,in,out),  enc.<res>_pyramid.conv                     HWIO -> OIHW
  bias  (progressive input "residual")
GroupNorm_0, Conv_1 (last two)                  norm_out, conv_out                         as above
=============================================  ==========================================  ======================

ResnetBlockBigGANpp_k counts every residual block in creation order: per level the num_res_blocks blocks, then
the down block (whose pyramid Downsample_k follows it), then the two middle blocks, then per decoder level
num_res_blocks + 1 blocks and the up block; AttnBlockpp_k counts attention in the same order (after each block at
an attention resolution, one in the middle, one after a decoder level's last block at an attention resolution).

Checked here against the Flax source named above, not against the released files themselves (no network access
where this was written): the importer checks every name and shape and the total count, so a file that differs
stops with the first mismatched parameter named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

# (official module path, cmlearn module path, kind); kinds: fourier dense conv norm resblock attn pyramid
Entry = tuple[str, str, str]


def _levels(cfg: Mapping[str, Any]) -> list[int]:
    return [int(cfg.get("resolution", 32)) >> i for i in range(len(cfg["ch_mult"]))]


def module_entries(cfg: Mapping[str, Any]) -> list[Entry]:
    """The official NCSNpp's parameterised submodules in creation order (a replay of jcm/models/ncsnpp.py
    ``NCSNpp.__call__``), each paired with the cmlearn module that holds the same weights."""
    levels, nrb = _levels(cfg), int(cfg["num_res_blocks"])
    attn = {int(r) for r in cfg.get("attn_resolutions", ())}
    out: list[Entry] = [("GaussianFourierProjection_0", "fourier", "fourier"), ("Dense_0", "emb0", "dense"),
                        ("Dense_1", "emb1", "dense"), ("Conv_0", "conv_in", "conv")]
    count = {"res": 0, "attn": 0, "down": 0}

    def res(cm: str) -> None:
        out.append((f"ResnetBlockBigGANpp_{count['res']}", cm, "resblock"))
        count["res"] += 1

    def att(cm: str) -> None:
        out.append((f"AttnBlockpp_{count['attn']}", f"{cm}.attn", "attn"))
        count["attn"] += 1

    for lvl, r in enumerate(levels):  # encoder
        for i in range(nrb):
            res(f"enc.{r}x{r}_block{i}")
            if r in attn:
                att(f"enc.{r}x{r}_block{i}")
        if lvl < len(levels) - 1:
            res(f"enc.{r // 2}x{r // 2}_down")
            out.append((f"Downsample_{count['down']}/Conv2d_0", f"enc.{r // 2}x{r // 2}_pyramid.conv", "pyramid"))
            count["down"] += 1
    r = levels[-1]  # middle: ResnetBlock, AttnBlock, ResnetBlock
    res(f"dec.{r}x{r}_mid0")
    att(f"dec.{r}x{r}_mid0")
    res(f"dec.{r}x{r}_mid1")
    for lvl in reversed(range(len(levels))):  # decoder
        r = levels[lvl]
        for i in range(nrb + 1):
            res(f"dec.{r}x{r}_block{i}")
        if r in attn:
            att(f"dec.{r}x{r}_block{nrb}")
        if lvl > 0:
            res(f"dec.{2 * r}x{2 * r}_up")
    out += [("GroupNorm_0", "norm_out", "norm"), ("Conv_1", "conv_out", "conv")]
    return out


def _resblock_parts(net: torch.nn.Module, cm: str) -> list[tuple[str, str, str]]:
    blk = net.get_submodule(cm)
    parts = [("GroupNorm_0", "norm0", "norm"), ("Conv_0", "conv0", "conv"), ("Dense_0", "emb", "dense"),
             ("GroupNorm_1", "norm1", "norm"), ("Conv_1", "conv1", "conv")]
    if blk.skip is not None:  # ResnetBlockBigGANpp: conv1x1 shortcut when C != out_ch or up or down
        parts.append(("Conv_2", "skip", "conv"))
    return parts


def _leaf_pairs(net: torch.nn.Module, entries: Sequence[Entry]):
    """(official param path, cmlearn tensor name, how) for every leaf, in order."""
    for off, cm, kind in entries:
        if kind == "fourier":
            yield f"{off}/W", f"{cm}.freqs", "copy"
        elif kind == "resblock":
            for o, c, k in _resblock_parts(net, cm):
                yield from _leaf_pairs(net, [(f"{off}/{o}", f"{cm}.{c}", k)])
        elif kind == "attn":
            yield f"{off}/GroupNorm_0/scale", f"{cm}.norm.weight", "copy"
            yield f"{off}/GroupNorm_0/bias", f"{cm}.norm.bias", "copy"
            for i, part in enumerate("qkv"):
                yield f"{off}/NIN_{i}/W", f"{cm}.qkv.weight[{part}]", "nin"
                yield f"{off}/NIN_{i}/b", f"{cm}.qkv.bias[{part}]", "copy"
            yield f"{off}/NIN_3/W", f"{cm}.proj.weight", "nin"
            yield f"{off}/NIN_3/b", f"{cm}.proj.bias", "copy"
        elif kind == "norm":
            yield f"{off}/scale", f"{cm}.weight", "copy"
            yield f"{off}/bias", f"{cm}.bias", "copy"
        else:  # dense, conv (Flax "kernel") or pyramid (StyleGAN2-style Conv2d "weight")
            name = "weight" if kind == "pyramid" else "kernel"
            yield f"{off}/{name}", f"{cm}.weight", "dense" if kind == "dense" else "conv"
            yield f"{off}/bias", f"{cm}.bias", "copy"


def _to_flax(t: torch.Tensor, how: str) -> np.ndarray:
    a = t.detach().cpu().float().numpy()
    if how == "dense":
        return a.T.copy()
    if how == "conv":
        return a.transpose(2, 3, 1, 0).copy()  # OIHW -> HWIO
    if how == "nin":
        return a[:, :, 0, 0].T.copy()
    return a.copy()


def _from_flax(a: np.ndarray, how: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if how == "dense":
        return t.T.contiguous()
    if how == "conv":
        return t.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
    if how == "nin":
        return t.T[:, :, None, None].contiguous()
    return t


def _split_qkv(name: str) -> tuple[str, int | None]:
    if name.endswith("]"):
        base, part = name[:-3], name[-2]
        return base, "qkv".index(part)
    return name, None


def official_params(net: torch.nn.Module, cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The flat Flax parameter dict {"Dense_0/kernel": array, ...} holding ``net``'s weights (the export)."""
    sd = net.state_dict()
    out = {}
    for off, cm, how in _leaf_pairs(net, module_entries(cfg)):
        base, part = _split_qkv(cm)
        t = sd[base]
        if part is not None:
            t = t.chunk(3, dim=0)[part]
        out[off] = _to_flax(t, how)
    return out


def expected_shapes(net: torch.nn.Module, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """{official parameter path: its Flax shape} for a net of config ``cfg``, in the official creation order."""
    sd, out = net.state_dict(), {}
    for off, cm, how in _leaf_pairs(net, module_entries(cfg)):
        base, part = _split_qkv(cm)
        shape = list(sd[base].shape)
        if part is not None:
            shape[0] //= 3
        if how == "dense":
            shape = shape[::-1]
        elif how == "conv":
            shape = [shape[2], shape[3], shape[1], shape[0]]
        elif how == "nin":
            shape = [shape[1], shape[0]]
        out[off] = tuple(shape)
    return out


def state_dict_from_official(net: torch.nn.Module, cfg: Mapping[str, Any],
                             params: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A state dict for ``net`` from a flat Flax parameter dict (the import; shapes already checked)."""
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    qkv: dict[str, list] = {}
    for off, cm, how in _leaf_pairs(net, module_entries(cfg)):
        base, part = _split_qkv(cm)
        t = _from_flax(np.asarray(params[off]), how)
        if part is None:
            sd[base] = t.reshape(sd[base].shape)
        else:
            qkv.setdefault(base, [None, None, None])[part] = t
    for base, parts in qkv.items():
        sd[base] = torch.cat(parts, dim=0)
    return sd
