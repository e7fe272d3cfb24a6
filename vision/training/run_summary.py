"""Which epoch a checkpoint is, and how it compares with the run's last epoch: for exporters' logs.

Why: ``--model-dir`` exports ``best.pth``, which on a short run with a noisy validation metric is
often an early epoch; the user must see which one it is, its metric, and the last epoch's.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from vision.training.run_folder import read_metrics


def _fmt(name: str, value: Any) -> str:
    return f"{name} {value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else f"{name} n/a"


def describe_checkpoint(path: str | Path, checkpoint: Mapping[str, Any] | None) -> list[str]:
    """Log lines: the checkpoint's epoch and selection metric, and the run's last epoch (from metrics.jsonl)."""
    if not checkpoint or not isinstance(checkpoint.get("epoch"), int):
        return []
    path = Path(path)
    epoch = int(checkpoint["epoch"])
    best = checkpoint.get("best_metric") if isinstance(checkpoint.get("best_metric"), dict) else {}
    metric = str(best.get("name") or "")
    records = [r for r in read_metrics(path.parent) if isinstance(r.get("epoch"), int)]
    own = next((r for r in records if r["epoch"] == epoch), None)
    if own is None:  # no metrics.jsonl line: the checkpoint's own record, else its top-level val_loss
        own = dict(checkpoint.get("metrics") or {}) if isinstance(checkpoint.get("metrics"), dict) else {}
        if "val_loss" not in own and isinstance(checkpoint.get("val_loss"), (int, float)):
            own["val_loss"] = checkpoint["val_loss"]
    if not metric:
        metric = next((k for k in ("val_mAP", "val_map", "mAP", "val_loss") if k in own), "val_loss")
    lines = [f"{path.name} is epoch {epoch} ({_fmt(metric, own.get(metric))})"]
    if best.get("epoch") is not None and best.get("epoch") != epoch:
        lines[0] += f"; the run's best by {metric} is epoch {best['epoch']} ({best.get('file')})"
    if records:
        last = max(records, key=lambda r: r["epoch"])
        if last["epoch"] != epoch:
            lines.append(f"the run's last epoch is {last['epoch']} ({_fmt(metric, last.get(metric))}); "
                         f"pass --input with its checkpoint to export that one instead")
    return lines
