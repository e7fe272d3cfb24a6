"""Tell a dataset's format from its folder, for ``--dataset-type auto``.

Why: users who export from a labelling tool should not have to know which of
four names their layout has. Each format is recognised by the file it cannot
do without; a folder that matches none, or more than one, is refused in one
line that says what was looked for, so the user passes ``--dataset-type``.
"""
from __future__ import annotations

import os
from pathlib import Path

from vision.utils.misc import UserError

# (type, what is looked for, in words)
SIGNATURES: tuple[tuple[str, str], ...] = (
    ("coco", "annotations/instances_*.json"),
    ("voc", "Annotations/ + JPEGImages/"),
    ("open_images", "sub-*-annotations-bbox.csv"),
    ("yolo", "data.yaml (or a path to a .yaml file)"),
)


def _evidence(root: Path) -> dict[str, Path]:
    from vision.datasets.yolo import YAML_NAMES

    found: dict[str, Path] = {}
    coco = sorted((root / "annotations").glob("instances_*.json")) if (root / "annotations").is_dir() else []
    if coco:
        found["coco"] = coco[0]
    if (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir():
        found["voc"] = root / "Annotations"
    oi = sorted(root.glob("sub-*-annotations-bbox.csv"))
    if oi:
        found["open_images"] = oi[0]
    for name in YAML_NAMES:
        if (root / name).is_file():
            found["yolo"] = root / name
            break
    return found


def _roboflow_coco(root: Path) -> str | None:
    """Roboflow's "COCO" export (``train/_annotations.coco.json``) is not the COCO 2017 layout read here."""
    found = sorted(root.glob("*/_annotations.coco.json"))
    if not found:
        return None
    return (f"this looks like a Roboflow COCO export ({found[0].relative_to(root)}), not the COCO 2017 layout "
            f"(annotations/instances_train2017.json + train2017/): export as 'YOLOv8' instead, or move each "
            f"split's _annotations.coco.json to annotations/instances_<train|val>2017.json and its images to "
            f"<train|val>2017/")


def detect_dataset_type(path: str | os.PathLike, type_flag: str | None = "--dataset-type") -> tuple[str, Path]:
    """(dataset type, the file or folder that gave it away); ``UserError`` when not exactly one fits.

    ``type_flag``: the caller's flag that names the type, suggested in the error; None for a
    caller without one (the error then suggests nothing it does not have)."""
    root = Path(path)
    if root.is_file():
        if root.suffix.lower() in (".yaml", ".yml"):
            return "yolo", root
        raise UserError(f"cannot tell the dataset type of file {root}: only a YOLO .yaml may be given as a "
                        f"file; pass the dataset folder")
    if not root.is_dir():
        raise UserError(f"dataset folder not found: {root}")
    found = _evidence(root)
    if len(found) == 1:
        (kind, where), = found.items()
        return kind, where
    looked = "; ".join(f"{what} ({kind})" for kind, what in SIGNATURES)
    if not found:
        from vision.datasets.yolo import export_without_yaml

        hint = export_without_yaml(root) or _roboflow_coco(root)
        raise UserError(f"cannot tell the dataset type of {root}: " +
                        (hint if hint else f"looked for {looked}; found none" +
                         (f" (pass {type_flag})" if type_flag else "")))
    both = " and ".join(f"{kind} ({where})" for kind, where in found.items())
    raise UserError(f"{root} is ambiguous: it looks like {both}" +
                    (f"; pass {type_flag} to choose" if type_flag else ""))
