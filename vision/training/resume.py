"""Which saved training arguments a ``--resume`` command line may change.

A resumed run rebuilds everything from the folder's ``args.json``; flags given on the
command line override it according to these rules:

- FREE: runtime knobs that do not change what is learned (epochs, workers, batch size,
  device, logging, validation cadence, ...): applied silently;
- WARNED: the data folders: applied with a warning (the classes and preprocessing must
  match; the class list is checked once the datasets are opened);
- everything else (net, resolution, optimizer, lr, seed, ...): refused with a one-line
  error naming the flag, unless ``--force-override``.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from vision.utils.misc import UserError

log = logging.getLogger(__name__)

FREE = frozenset({
    "num_epochs", "num_workers", "batch_size", "log_level", "device", "use_cuda", "debug_steps",
    "validation_epochs", "validation_mean_ap", "tensorboard", "keep_checkpoints", "compile", "checkpoint_folder",
    "memory_format", "profile", "viz_inputs",
})
WARNED = frozenset({"datasets", "validation_dataset"})
META = frozenset({"resume", "force_override", "archive_old_run"})


def _same(a: Any, b: Any) -> bool:
    """Equal once serialized as JSON (a tuple from the command line equals a saved list)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def merge_resume_args(saved: Mapping[str, Any], given: Mapping[str, Any], defaults: Mapping[str, Any],
                      flag_names: Mapping[str, str], force: bool = False) -> dict[str, Any]:
    """The arguments of the resumed run: ``saved`` updated with the allowed ``given`` flags.

    Args:
        saved: the resolved arguments from ``args.json``.
        given: only the flags present on this command line (dest -> value).
        defaults: the parser's defaults, for arguments ``args.json`` predates.
        flag_names: dest -> the flag to name in messages (e.g. ``"lr" -> "--lr"``).
        force: ``--force-override``: apply refused flags too (with a warning).
    Raises:
        UserError naming the first refused flag.
    """
    merged = dict(defaults)
    merged.update({k: v for k, v in saved.items() if k in defaults and k not in META})
    for dest, value in given.items():
        if dest in META:
            merged[dest] = value
            continue
        if dest in saved and _same(saved[dest], value):
            continue
        if dest not in saved and dest in defaults and _same(defaults[dest], value):
            continue  # a flag newer than the run's args.json, given at its default: nothing changes
        flag = flag_names.get(dest, "--" + dest.replace("_", "-"))
        old = saved.get(dest, defaults.get(dest))
        if dest in FREE:
            log.info("resume: %s changed from %s to %s", flag, old, value)
        elif dest in WARNED:
            log.warning("resume: %s changed from %s to %s: the new data must have the same classes and "
                        "preprocessing as the run it continues", flag, old, value)
        elif force:
            log.warning("resume: %s forced from %s to %s (--force-override): the run no longer continues "
                        "exactly", flag, old, value)
        else:
            raise UserError(f"{flag} cannot change when resuming (saved {old}, given {value}); "
                            f"start a new run, or pass --force-override to change it anyway")
        merged[dest] = value
    return merged
