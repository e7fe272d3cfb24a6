"""Optimizer parameter groups (as upstream) and the optimizer itself.

Groups, in this order: the backbone (``base_net``) at ``base_net_lr``; the extra layers
(``source_layer_add_ons`` + ``extras``) at ``extra_layers_lr``; the prediction heads at
``lr``. ``freeze_base_net`` drops the first group and freezes the backbone; ``freeze_net``
trains only the heads. The order is stable so a saved optimizer state loads back.
"""
from __future__ import annotations

import itertools
import logging
from typing import Iterable, Sequence

import torch
import torch.nn as nn

from vision.utils.misc import freeze_net_layers

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")


def freeze(module: nn.Module | None) -> None:
    """Stop gradients for every parameter of ``module`` (None: nothing to freeze)."""
    if module is not None:
        freeze_net_layers(module)


def _params(*modules: nn.Module | None) -> list[nn.Parameter]:
    return [p for p in itertools.chain.from_iterable(m.parameters() for m in modules if m is not None)
            if p.requires_grad]


def param_groups(net: nn.Module, lr: float, base_net_lr: float | None = None,
                 extra_layers_lr: float | None = None, freeze_base_net: bool = False,
                 freeze_net: bool = False) -> list[dict]:
    """Upstream's grouping; ``None`` rates default to ``lr``. Empty groups are left out."""
    base_net_lr = lr if base_net_lr is None else base_net_lr
    extra_layers_lr = lr if extra_layers_lr is None else extra_layers_lr
    base = getattr(net, "base_net", None)
    add_ons = getattr(net, "source_layer_add_ons", None)
    extras = getattr(net, "extras", None)
    heads = (getattr(net, "regression_headers", None), getattr(net, "classification_headers", None))
    if freeze_net:
        freeze(base)
        freeze(add_ons)
        freeze(extras)
        log.info("frozen: all layers except the prediction heads")
    elif freeze_base_net:
        freeze(base)
        log.info("frozen: base net")
    groups = [
        {"name": "base_net", "params": _params(base), "lr": base_net_lr},
        {"name": "extra_layers", "params": _params(add_ons, extras), "lr": extra_layers_lr},
        {"name": "heads", "params": _params(*heads), "lr": lr},
    ]
    grouped = {id(p) for g in groups for p in g["params"]}
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in grouped]
    if rest:  # a net with parts outside upstream's four attributes still trains them, at lr
        groups[2]["params"].extend(rest)
    return [g for g in groups if g["params"]]


def build_optimizer(name: str, groups: Iterable[dict], *, lr: float, momentum: float = 0.9,
                    weight_decay: float = 0.0, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                    nesterov: bool = False, dampening: float = 0.0, amsgrad: bool = False) -> torch.optim.Optimizer:
    """``sgd`` | ``adam`` | ``adamw`` over ``groups`` (each may carry its own ``lr``)."""
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               dampening=dampening, nesterov=nesterov)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                amsgrad=amsgrad)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                 amsgrad=amsgrad)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
