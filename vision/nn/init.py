"""Weight initialisation shared by the nets and the weight loaders."""
from __future__ import annotations

from torch import nn


def xavier_init_(m: nn.Module) -> None:
    """Xavier-uniform the weight of a ``Conv2d`` (upstream's init for extras and heads); others untouched.

    Meant for ``module.apply(xavier_init_)``.
    """
    if isinstance(m, nn.Conv2d):
        nn.init.xavier_uniform_(m.weight)
