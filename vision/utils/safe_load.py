"""Read checkpoints that pickled a torch scheduler or optimizer object, without running any code.

The seed fork (kaboom-labs) saved ``{'epoch', 'weights', 'optimizer', 'scheduler'}`` with the LR
scheduler *object* (and, inside it, its optimizer object). ``torch.load(weights_only=True)``
refuses such a file, and a full unpickle would run whatever code the file names. Here the file is
read with torch's own weights-only unpickler, to which the *names* of the known torch scheduler
and optimizer classes are admitted, each bound to a ``PickledState`` stand-in that keeps the
pickled ``__dict__`` as plain data: the real classes are never imported, built or called.
Everything else is still refused: ``os.system``, ``builtins.eval``, any other class, a REDUCE on
any callable that is not a tensor rebuild function.

Only ``vision.utils.misc`` is imported from this project, so any layer may use it.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from vision.utils.misc import UserError

log = logging.getLogger(__name__)

SCHEDULER_CLASSES: tuple[str, ...] = tuple(f"torch.optim.lr_scheduler.{n}" for n in (
    "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts", "OneCycleLR", "CyclicLR", "ReduceLROnPlateau", "LambdaLR",
    "MultiplicativeLR", "SequentialLR", "ChainedScheduler"))
OPTIMIZER_CLASSES: tuple[str, ...] = tuple(f"torch.optim.{n}" for n in (
    "sgd.SGD", "adam.Adam", "adamw.AdamW", "rmsprop.RMSprop", "adagrad.Adagrad", "adadelta.Adadelta",
    "adamax.Adamax", "nadam.NAdam", "radam.RAdam", "asgd.ASGD", "rprop.Rprop",
    "optimizer._RequiredParameter"))  # old SGD's "lr not given" marker inside 'defaults'
PLAIN_STATE_CLASSES: frozenset[str] = frozenset(SCHEDULER_CLASSES + OPTIMIZER_CLASSES)


class PickledState:
    """A pickled object seen as data: ``qualname`` (its class's full name) and ``state``
    (what pickle would have put in its ``__dict__``). Has no behaviour of the class it stands for."""

    qualname = ""

    def __new__(cls, *args: Any) -> "PickledState":
        if args:  # plain objects pickle with no constructor arguments
            raise pickle.UnpicklingError(f"{cls.qualname} pickled with constructor arguments")
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.qualname}: unexpected pickled state {type(state).__name__}")
        self.state = state

    def __repr__(self) -> str:
        return f"PickledState({self.qualname})"


def _stand_in(qualname: str) -> type:
    return type(qualname.rsplit(".", 1)[1], (PickledState,), {"qualname": qualname, "__module__": __name__})


def _plain_dict(*args: Any) -> dict:
    """Stands in for ``collections.defaultdict(factory)`` (the optimizer's ``state``): a plain dict."""
    return {}


_STAND_INS: dict[str, type] = {name: _stand_in(name) for name in PLAIN_STATE_CLASSES}
_ADMITTED: list[tuple[Any, str]] = ([(cls, name) for name, cls in _STAND_INS.items()]
                                    + [(_plain_dict, "collections.defaultdict"), (_plain_dict, "builtins.dict")])


def refusal(path: str | os.PathLike, what: str) -> str:
    """The one-line message for a file that needs ``what`` (a class or function) to load."""
    return (f"refusing to load {path}: it holds pickled Python objects ({what}), not just tensors, and "
            f"loading it could run code; re-save it as a state_dict where it was made")


def refused_name(e: BaseException) -> str | None:
    """The class or function a weights-only unpickling error refused, or None for another error."""
    for pattern in (r"Unsupported global: GLOBAL (\S+)", r"unrecognized function (\S+)",
                    r"GLOBAL (\S+) whose module", r"allowlisted via `add_safe_globals` but got (\S+)"):
        found = re.search(pattern, str(e))
        if found:
            return found.group(1)
    return None


def load_plain_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` of ``path`` where the known torch scheduler/optimizer objects come back as
    plain data (see ``to_plain``); one-line UserError for anything else that is not weights."""
    p = Path(path)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_ADMITTED):
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        name = refused_name(e)
        if name:
            raise UserError(refusal(p, name)) from None
        raise UserError(f"{p} is not a readable PyTorch weights file (truncated or corrupt?)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError,
            IndexError, TypeError) as e:
        log.debug("restricted load of %s failed: %s: %s", p, type(e).__name__, e)
        raise UserError(f"{p} is not a readable PyTorch weights file (truncated or corrupt?)") from None
    notes: list[str] = []
    plain = to_plain(obj, notes)
    if isinstance(plain, dict) and "weights" in plain:
        plain = _seed_checkpoint(plain, obj, notes)
    log.info("%s: %s", p, "; ".join(notes) if notes else "read with pickled objects as plain data")
    return plain


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def optimizer_state_dict(obj: PickledState) -> dict[str, Any]:
    """A pickled optimizer object as ``optimizer.state_dict()`` would have given it (params -> indices)."""
    index: dict[int, int] = {}
    groups = []
    for group in obj.state.get("param_groups", []):
        g = {k: v for k, v in group.items() if k != "params"}
        g["params"] = [index.setdefault(id(p), len(index)) for p in group.get("params", [])]
        groups.append(g)
    state = {index[id(p)]: s for p, s in obj.state.get("state", {}).items() if id(p) in index}
    return {"state": state, "param_groups": groups}


def to_plain(obj: Any, notes: list[str]) -> Any:
    """Replace every ``PickledState`` inside ``obj``: a scheduler by its ``state_dict()`` (its
    ``__dict__`` without the optimizer it held), an optimizer by its ``state_dict()``."""
    if isinstance(obj, PickledState):
        if obj.qualname in SCHEDULER_CLASSES:
            held = obj.state.get("optimizer")
            if isinstance(held, PickledState):
                notes.append(f"ignored the {_short(held.qualname)} object pickled inside {_short(obj.qualname)}")
            notes.append(f"read {_short(obj.qualname)} as plain state (its code was not run)")
            return {k: to_plain(v, notes) for k, v in obj.state.items() if k != "optimizer"}
        if obj.qualname in OPTIMIZER_CLASSES and "param_groups" in obj.state:
            return optimizer_state_dict(obj)
        return {"class": obj.qualname, "state": to_plain(obj.state, notes)}
    if isinstance(obj, dict):  # containers without stand-ins stay the very same objects (state_dict metadata)
        items = {k: to_plain(v, notes) for k, v in obj.items()}
        return obj if all(items[k] is v for k, v in obj.items()) else items
    if isinstance(obj, (list, tuple)):
        values = [to_plain(v, notes) for v in obj]
        return obj if all(a is b for a, b in zip(values, obj)) else type(obj)(values)
    return obj


def _seed_checkpoint(plain: dict, raw: Mapping, notes: list[str]) -> dict:
    """Name what a seed-fork checkpoint gave: weights, optimizer state, scheduler state and class."""
    taken = [f"weights ({sum(isinstance(v, torch.Tensor) for v in plain['weights'].values())} tensors)"
             if isinstance(plain["weights"], Mapping) else "weights"]
    sched = raw.get("scheduler")
    if isinstance(sched, PickledState):
        plain["scheduler_class"] = _short(sched.qualname)
        held = sched.state.get("optimizer")
        if plain.get("optimizer") is None and isinstance(held, PickledState) and held.qualname in OPTIMIZER_CLASSES:
            plain["optimizer"] = optimizer_state_dict(held)  # no 'optimizer' entry: the copy inside is all there is
            notes[:] = [f"optimizer state read from the {_short(held.qualname)} inside {_short(sched.qualname)}"
                        if n.startswith("ignored the") else n for n in notes]
        taken.append(f"{_short(sched.qualname)} state (last_epoch {plain['scheduler'].get('last_epoch')})")
    if isinstance(plain.get("optimizer"), Mapping) and "param_groups" in plain["optimizer"]:
        taken.append(f"optimizer state ({len(plain['optimizer']['param_groups'])} param groups)")
    notes.insert(0, f"seed-fork checkpoint of epoch {plain.get('epoch')}: took {', '.join(taken)}")
    return plain


def load_optimizer_state_if_it_fits(optimizer: torch.optim.Optimizer, state_dict: Mapping[str, Any] | None,
                                    source: str) -> bool:
    """Load a (seed-fork) optimizer state when its parameter groups match ``optimizer``'s; else log
    that it was ignored and why (another optimizer, other groups) and leave ``optimizer`` as it is."""
    if not state_dict:
        return False
    groups = state_dict.get("param_groups") or []
    mine = [len(g["params"]) for g in optimizer.param_groups]
    theirs = [len(g.get("params", [])) for g in groups]
    missing = sorted({k for g in optimizer.param_groups for k in g if k != "params"}
                     - {k for g in groups for k in g})
    if mine != theirs or missing:
        why = (f"its parameter groups {theirs} are not this optimizer's {mine}" if mine != theirs
               else f"it lacks {', '.join(missing)} (another optimizer type)")
        log.warning("ignored the optimizer state of %s: %s", source, why)
        return False
    try:
        optimizer.load_state_dict(dict(state_dict))
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        log.warning("ignored the optimizer state of %s: %s", source, str(e).splitlines()[0] if str(e) else e)
        return False
    log.info("took the optimizer state of %s (%d param groups)", source, len(groups))
    return True
