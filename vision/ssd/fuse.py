"""Fold BatchNorm layers into the convolution before them, for inference.

Why: in eval mode a BatchNorm2d is a fixed per-channel affine map, so
``bn(conv(x))`` equals one convolution with rescaled weights and a bias. Folding
removes a full read and write of every normalized feature map, which on a CPU
(memory-bound depthwise convolutions) is a measurable share of the forward pass.

The net is not traced as a whole (the SSD's forward is a generator over its
taps); instead every module is visited:

- inside an ``nn.Sequential`` (with Sequential's own forward), a ``Conv2d`` directly followed by a ``BatchNorm2d``
  is folded, unless the SSD taps a feature map between the two (a cut point
  from ``source_layer_indexes``);
- any other module whose direct children include both kinds (e.g. mb3's
  ``Block`` calling ``self.bn1(self.conv1(x))``) is traced one level deep with
  ``torch.fx``, and a pair is folded only when the BatchNorm is the one and only
  user of that convolution's output. Modules fx cannot trace are left alone.

A folded BatchNorm is replaced by ``nn.Identity`` (indices of Sequentials stay
valid, so the SSD's taps keep pointing at the same places). State-dict keys of
folded BatchNorms disappear: the result is for inference and export, not for
saving as a checkpoint.
"""
from __future__ import annotations

import copy
import logging
from typing import Iterable

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from vision.ssd.ssd import GraphPath

log = logging.getLogger(__name__)

__all__ = ["fold_batch_norm", "count_batch_norms", "optimize_for_inference"]


def fold_batch_norm(net: nn.Module) -> nn.Module:
    """A copy of ``net`` in eval mode with every foldable ``Conv2d -> BatchNorm2d`` pair merged.

    The input module is not modified. Outputs match the original (eval mode) up to float
    rounding (about 1e-6 relative). Returns the copy; ``count_batch_norms`` tells how many
    BatchNorms were left (ones not preceded by a convolution, such as vgg16-ssd's on conv4_3).
    """
    folded = copy.deepcopy(net).eval()
    cuts = _ssd_cut_points(folded)
    n = 0
    for module in list(folded.modules()):
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            n += _fold_sequential(module, cuts.get(id(module), set()))
        elif not isinstance(module, nn.ModuleList) and _has_conv_and_bn_children(module):
            n += _fold_traced(module)
    log.debug("folded %d BatchNorm layers into convolutions", n)
    return folded


def optimize_for_inference(net: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """A copy of ``net`` for running, not training: eval mode, BatchNorms folded and, with
    ``channels_last``, 4-D weights in NHWC memory format.

    Why channels_last: oneDNN's CPU convolutions work in NHWC; with NCHW weights every
    convolution converts its input and output. With NHWC weights an ordinary NCHW input
    batch is converted once by the first convolution and the rest stays NHWC. Measured on a
    2-core CPU (bench/eval.py, bench/inference.py): mb2-ssd-lite batch 8 forward 1.5-1.7x
    faster, mb1-ssd about 1.3x. On CUDA without AMP it can be slower: pass False there.

    Outputs equal the original eval-mode outputs up to float rounding (``fold_batch_norm``);
    the caller's net (its weights, mode and memory format) is left as it was.
    """
    out = fold_batch_norm(net)
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    return out


def count_batch_norms(net: nn.Module) -> int:
    """Number of BatchNorm layers still in ``net``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
            and bn.running_mean is not None and bn.num_features == conv.out_channels)


def _fold_sequential(seq: nn.Sequential, cuts: set[int]) -> int:
    """Fold adjacent pairs ``seq[i], seq[i+1]``; ``cuts`` holds indices ``i+1`` where a tap reads
    the output of ``seq[:i+1]`` (the conv output itself must then survive)."""
    n = 0
    names = list(seq._modules)
    for i in range(len(names) - 1):
        conv, bn = seq._modules[names[i]], seq._modules[names[i + 1]]
        if (i + 1) in cuts or not _foldable(conv, bn):
            continue
        seq._modules[names[i]] = fuse_conv_bn_eval(conv, bn)
        seq._modules[names[i + 1]] = nn.Identity()
        n += 1
    return n


def _has_conv_and_bn_children(module: nn.Module) -> bool:
    kinds = {type(c) for c in module.children()}
    return nn.Conv2d in kinds and nn.BatchNorm2d in kinds


class _ShallowTracer(fx.Tracer):
    """Treat every submodule as a leaf: the graph shows which child feeds which."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _fold_traced(module: nn.Module) -> int:
    try:
        graph = _ShallowTracer().trace(module)
    except Exception as e:  # data-dependent control flow etc.: leave the module as it is
        log.debug("not folding inside %s: fx cannot trace it (%s)", type(module).__name__, e)
        return 0
    n = 0
    for node in graph.nodes:
        if node.op != "call_module" or "." in node.target:
            continue
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module" or "." in users[0].target:
            continue
        conv = getattr(module, node.target)
        bn = getattr(module, users[0].target)
        # the BatchNorm must read only this conv (and be called only here)
        bn_calls = [u for u in graph.nodes if u.op == "call_module" and u.target == users[0].target]
        conv_calls = [u for u in graph.nodes if u.op == "call_module" and u.target == node.target]
        if len(bn_calls) != 1 or len(conv_calls) != 1 or not _foldable(conv, bn):
            continue
        setattr(module, node.target, fuse_conv_bn_eval(conv, bn))
        setattr(module, users[0].target, nn.Identity())
        n += 1
    return n


def _ssd_cut_points(net: nn.Module) -> dict[int, set[int]]:
    """``{id(sequential): {index, ...}}`` where an SSD reads a feature map from the middle of a
    Sequential (``source_layer_indexes``); empty for other modules."""
    sources: Iterable = getattr(net, "source_layer_indexes", None) or []
    base = getattr(net, "base_net", None)
    if not isinstance(base, nn.Sequential):
        return {}
    cuts: dict[int, set[int]] = {id(base): set()}
    for src in sources:
        if isinstance(src, GraphPath):
            sub = getattr(base[src.s0], src.name, None)
            if isinstance(sub, nn.Sequential):
                cuts.setdefault(id(sub), set()).add(int(src.s1))
            cuts[id(base)].add(int(src.s0))
        elif isinstance(src, tuple):
            cuts[id(base)].add(int(src[0]))
        else:
            cuts[id(base)].add(int(src))
    return cuts

