"""YOLO (Ultralytics) layout reader: what Roboflow, CVAT, Label Studio and Ultralytics export.

``DIR/data.yaml`` (or the path of the yaml itself) names the splits and classes::

    path: .            # dataset root, relative to the yaml's folder (default: that folder)
    train: images/train        # a folder of images, a .txt list of image paths, or a list of those
    val: images/val
    test: images/test          # optional
    names: [cat, dog]          # or {0: cat, 1: dog}; nc (optional) must agree

Labels live where Ultralytics looks for them: the image path with its last
``/images/`` replaced by ``/labels/`` and the extension by ``.txt``; one line per
box ``class cx cy w h``, normalised to 0..1, class 0-based. Lines with more
columns and an odd count (``class x1 y1 x2 y2 ...``, a segmentation polygon) become
the polygon's bounding box, as Ultralytics does. An image without a label file, or
with an empty one, is a background image.

Bad lines (wrong column count, non-numbers, class out of range, values outside
0..1 by more than ``COORD_TOLERANCE``, zero or negative size) are skipped and
counted; the first few are logged with ``file:line``, all are kept in
``bad_lines``. An image none of whose label lines is usable is left out rather than
trained as background; a train split where no image has a label file is refused.
Values outside 0..1 within the tolerance are clipped. A missing or malformed yaml,
or a split that is not there, is a one-line ``UserError``.

Roboflow writes ``train: ../train/images`` next to a yaml that sits in the dataset
folder itself; as Ultralytics does, a relative entry starting with ``../`` that
does not exist is retried without it.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
import numpy as np

from vision.datasets.base import DetectionDataset, Transform, TargetTransform, format_ids
from vision.utils.paths import IMAGE_EXTENSIONS, is_image_file
from vision.utils.labels import BACKGROUND, normalize_class_names
from vision.utils.misc import UserError

log = logging.getLogger(__name__)

YAML_NAMES = ("data.yaml", "data.yml")
COORD_TOLERANCE = 1e-3  # labelling tools round; a value this far outside 0..1 is clipped, not refused
SPLITS = ("train", "val", "test")
LOGGED_BAD_LINES = 5


def find_yaml(path: str | os.PathLike) -> Path:
    """The data.yaml a user means by ``path`` (the file itself, or a folder holding one)."""
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() not in (".yaml", ".yml"):
            raise UserError(f"YOLO dataset: {p} is not a .yaml file")
        return p
    if not p.is_dir():
        raise UserError(f"YOLO dataset not found: {p}")
    for name in YAML_NAMES:
        if (p / name).is_file():
            return p / name
    for name in YAML_NAMES:
        if (p / name).is_dir():
            raise UserError(f"YOLO dataset {p}: {p / name} is a folder, not a yaml file")
    hint = export_without_yaml(p)
    raise UserError(f"YOLO dataset {p}: no {' or '.join(YAML_NAMES)} in the folder" + (f"; {hint}" if hint else ""))


def export_without_yaml(folder: Path) -> str | None:
    """What to do with a labelling tool's YOLO export that has no data.yaml (CVAT, Label Studio), or None.

    Why: those exports are the YOLO label format without Ultralytics' yaml; "no data.yaml" or
    "cannot tell the type" alone leaves the user guessing, so say which tool it is and the yaml to write.
    A yaml of another name (Ultralytics ships ``coco8.yaml``) is named too.
    """
    others = sorted(q.name for q in folder.glob("*.y*ml") if q.suffix.lower() in (".yaml", ".yml") and q.is_file())
    if others:
        return f"it has {', '.join(others[:3])}: pass that file itself (--datasets {folder / others[0]})"
    if (folder / "obj.data").is_file() or (folder / "obj.names").is_file():
        names = "obj.names"
        images = "obj_train_data" if (folder / "obj_train_data").is_dir() else "<the image folder>"
        tool = "a CVAT 'YOLO 1.1' (Darknet) export (obj.data / obj.names)"
    elif (folder / "classes.txt").is_file() and (folder / "labels").is_dir():
        names = "classes.txt"
        images = "images" if (folder / "images").is_dir() else "<the image folder>"
        tool = "a Label Studio YOLO export (classes.txt, images/, labels/)"
    else:
        return None
    return (f"this looks like {tool}, which has no data.yaml: export as 'Ultralytics YOLO' instead, or write "
            f"{folder / 'data.yaml'} with 'train: {images}', 'val: <a folder or .txt list of images>' and "
            f"'names:' the lines of {names} in order (labels next to the images or in labels/ are found)")


def _class_names(data: dict, src: Path) -> list[str]:
    names = data.get("names")
    nc = data.get("nc")
    if isinstance(nc, str) and nc.strip().isdigit():
        nc = int(nc)
    if nc is not None and (type(nc) is not int or nc < 1):
        raise UserError(f"{src}: 'nc' must be a positive integer, got {nc!r}")
    if names is None:
        if nc is None:
            raise UserError(f"{src}: no 'names' (the class list) and no 'nc'")
        names = [f"class{i}" for i in range(nc)]  # Ultralytics' fallback
    elif isinstance(names, dict):
        # {0: a} in YAML; {"0": a} from JSON-minded exporters (Ultralytics converts those too)
        names = {int(k) if isinstance(k, str) and k.strip().isdigit() else k: v for k, v in names.items()}
        keys = list(names)
        if not all(type(k) is int for k in keys) or sorted(keys) != list(range(len(keys))):
            raise UserError(f"{src}: 'names' as a map needs the keys 0..{len(keys) - 1}, got {keys[:10]}")
        names = [names[i] for i in range(len(keys))]
    elif not isinstance(names, list):
        raise UserError(f"{src}: 'names' must be a list or a {{index: name}} map, got {type(names).__name__}")
    if not names:
        raise UserError(f"{src}: 'names' is empty")
    bad = [i for i, n in enumerate(names) if not isinstance(n, (str, int, float)) or not str(n).strip()]
    if bad:
        raise UserError(f"{src}: class {bad[0]} has no usable name ({names[bad[0]]!r})")
    names = [str(n).strip() for n in names]
    if nc is not None and nc != len(names):
        raise UserError(f"{src}: nc is {nc} but 'names' lists {len(names)} classes")
    if BACKGROUND in names:
        raise UserError(f"{src}: class {names.index(BACKGROUND)} is named {BACKGROUND}, the name reserved for "
                        f"class 0 of the SSD (rename it)")
    return normalize_class_names([BACKGROUND] + names, source=str(src))


def _text_loader():
    """PyYAML's safe loader with every plain scalar kept as its text (only empty / ``null`` / ``~`` are None).

    Why: YAML 1.1 turns class names ``yes``, ``no``, ``on``, ``off`` into booleans and ``007`` into
    the number 7, so labels.txt would say ``True`` or ``7``; a data.yaml holds only names, paths
    and ``nc``, and ``nc`` and the ``names`` map's keys are converted here.
    """
    import yaml

    class TextLoader(yaml.SafeLoader):
        pass

    TextLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:null"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return TextLoader


def read_data_yaml(path: str | os.PathLike) -> tuple[Path, dict, Path, list[str]]:
    """(yaml file, its content, dataset root, class names with BACKGROUND first)."""
    import yaml

    src = find_yaml(path)
    try:
        text = src.read_text(encoding="utf-8-sig")
        try:
            data = yaml.load(text, Loader=_text_loader())
        except yaml.YAMLError:
            # PyYAML refuses a tab after a value ("val: images/val\t"); trailing blanks mean
            # nothing in a data.yaml, so retry without them before calling the file malformed
            data = yaml.load("\n".join(line.rstrip() for line in text.splitlines()), Loader=_text_loader())
    except UnicodeDecodeError:
        raise UserError(f"{src}: not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{src}{where}: malformed YAML ({problem})") from None
    except OSError as e:
        raise UserError(f"cannot read {src}: {e.strerror or e}") from None
    if data is None:
        raise UserError(f"{src}: the file is empty (it needs train, val and names)")
    if not isinstance(data, dict):
        raise UserError(f"{src}: expected a mapping with train/val/names, got {type(data).__name__}")
    return src, data, _root(src, data.get("path")), _class_names(data, src)


def _root(src: Path, value) -> Path:
    """The dataset root the yaml's ``path`` names: relative to the yaml's folder, else to the current
    folder (Ultralytics' rule); a ``path`` that exists in neither (a yaml written on another machine,
    e.g. ``/content/datasets/x`` from Colab) falls back to the yaml's own folder, with a warning."""
    if value is None or str(value).strip() == "":
        return Path(os.path.normpath(src.parent))
    given = Path(str(value).strip()).expanduser()
    candidates = [given] if given.is_absolute() else [src.parent / given, given]
    for c in candidates:
        if c.is_dir():
            return Path(os.path.normpath(c))
    log.warning("%s: 'path: %s' is not a folder here; using the yaml's folder %s as the dataset root",
                src, value, src.parent)
    return Path(os.path.normpath(src.parent))


def label_path(image_path: str | os.PathLike) -> Path:
    """Ultralytics' rule: the last ``/images/`` of the path becomes ``/labels/``, extension ``.txt``."""
    s = str(image_path)
    a, b = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if a in s:
        head, tail = s.rsplit(a, 1)
        s = head + b + tail
    return Path(os.path.splitext(s)[0] + ".txt")


def _posix(entry: str) -> str:
    """A relative path written on Windows (``images\\train``, ``.\\images\\a.jpg``) in this OS's form."""
    if os.sep == "/" and "\\" in entry and not (len(entry) > 1 and entry[1] == ":"):
        return entry.replace("\\", "/")
    return entry


def _resolve(root: Path, entry: str) -> Path:
    entry = _posix(entry)
    p = Path(entry).expanduser()
    if p.is_absolute():
        return p
    q = root / p
    if not q.exists() and entry.startswith("../"):
        alt = root / entry[3:]  # Roboflow's "../train/images" next to a yaml inside the dataset folder
        if alt.exists():
            return alt
    return q


def _images_in(folder: Path) -> list[Path]:
    """Images under ``folder``, following symlinked subfolders (each real folder once)."""
    out = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop, or two links to one folder
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            if is_image_file(name):
                out.append(Path(dirpath) / name)
    return out


def split_images(src: Path, data: dict, root: Path, split: str) -> list[Path]:
    """The image files of ``split`` (folders walked recursively, .txt lists read), in a stable order."""
    value = data.get(split)
    if value is None or value == "" or value == []:
        raise UserError(f"{src}: no '{split}' split (the yaml has: "
                        f"{', '.join(k for k in SPLITS if data.get(k)) or 'none of train/val/test'})")
    entries = value if isinstance(value, list) else [value]
    images: list[Path] = []
    for entry in entries:
        if not isinstance(entry, (str, int, float)):
            raise UserError(f"{src}: '{split}' entries must be paths, got {entry!r}")
        p = _resolve(root, str(entry))
        if p.is_dir():
            found = _images_in(p)
            if not found:
                raise UserError(f"{src}: '{split}' folder {p} holds no images")
            images += found
        elif p.is_file() and p.suffix.lower() == ".txt":
            try:
                lines = p.read_text(encoding="utf-8-sig").splitlines()
            except UnicodeDecodeError:
                raise UserError(f"{p}: image list is not UTF-8 text") from None
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(_posix(line)).expanduser()
                    if not q.is_absolute():
                        # Ultralytics: relative to the list's folder; lists kept in a subfolder
                        # often name paths from the dataset root instead
                        q = p.parent / q if (p.parent / q).exists() or not (root / q).exists() else root / q
                    images.append(q)
        elif p.is_file() and is_image_file(p):
            images.append(p)
        else:
            raise UserError(f"{src}: '{split}' path not found: {p}")
    seen: set[str] = set()
    unique = []
    for im in images:
        key = os.path.normpath(str(im))
        if key not in seen:
            seen.add(key)
            unique.append(Path(key))
    return unique


def _orphan_labels(images: list[Path]) -> list[str]:
    """Label files in the label folders of ``images`` that belong to none of them.

    Why: images of a type not read here (.gif, .heic) or deleted ones leave their labels behind,
    and nothing else would tell: the split just has fewer boxes.
    """
    used = {os.path.normpath(str(label_path(im))) for im in images}
    image_folders = {os.path.normpath(str(im.parent)) for im in images}
    # only a labels/ folder of its own holds nothing but labels (beside the images there are image lists too)
    folders = {os.path.dirname(u) for u in used} - image_folders
    orphans = []
    for folder in sorted(folders):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in sorted(names):
            if name.lower().endswith(".txt") and name != "classes.txt":
                full = os.path.normpath(os.path.join(folder, name))
                if full not in used:
                    orphans.append(full)
    return orphans


def _parse_line(line: str, num_classes: int) -> tuple[int, float, float, float, float] | str:
    """(class, x1, y1, x2, y2) normalised, or the reason the line is bad."""
    parts = line.split()
    if len(parts) != 5 and not (len(parts) >= 7 and len(parts) % 2 == 1):
        hint = " (a 6th value is a confidence: predictions, not labels)" if len(parts) == 6 else ""
        return f"expected 5 values 'class cx cy w h' (or a polygon), got {len(parts)}{hint}"
    try:
        values = [float(v) for v in parts]
    except ValueError:
        return "not a number: " + next(v for v in parts if not _is_float(v))[:40]
    c = values[0]
    if not math.isfinite(c) or c != int(c):
        return f"class {parts[0]} is not an integer"
    c = int(c)
    if not 0 <= c < num_classes:
        return f"class {c} out of range 0..{num_classes - 1}"
    coords = values[1:]
    if not all(math.isfinite(v) and -COORD_TOLERANCE <= v <= 1 + COORD_TOLERANCE for v in coords):
        return f"value outside 0..1: {' '.join(parts[1:])[:60]}"
    coords = [min(max(v, 0.0), 1.0) for v in coords]
    if len(coords) == 4:
        cx, cy, w, h = coords
        if w <= 0 or h <= 0:
            return f"zero or negative size (w {parts[3]}, h {parts[4]})"
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    else:
        xs, ys = coords[0::2], coords[1::2]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        if x2 <= x1 or y2 <= y1:
            return "polygon with zero width or height"
    return c, max(x1, 0.0), max(y1, 0.0), min(x2, 1.0), min(y2, 1.0)


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


class YOLODataset(DetectionDataset):
    """YOLO-layout detection dataset (same interface as COCO / VOC / Open Images here).

    ``root``: the dataset folder holding ``data.yaml``, or the yaml file. ``split``:
    ``train``, ``val`` or ``test`` (the yaml's keys). ``keep_empty``: background images
    (no label file, or no usable line) stay as pure-background samples; False drops them.
    ``get_annotation(i)`` -> (image path relative to the root when possible, (boxes float32
    [K,4] corner pixels, labels int64 [K] in 1..C-1, is_difficult uint8 [K] all zero)); it
    reads the image's header to learn its size.
    """

    def __init__(self, root: str | os.PathLike, transform: Transform | None = None,
                 target_transform: TargetTransform | None = None, split: str = "train",
                 keep_empty: bool = True) -> None:
        super().__init__(transform, target_transform)
        split = str(split).strip().lower()
        if split not in SPLITS:
            raise UserError(f"YOLO split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.yaml_file, data, self.root, self.class_names = read_data_yaml(root)
        self.split = split
        self.keep_empty = keep_empty
        self.class_dict = {n: i for i, n in enumerate(self.class_names)}
        self._sizes: dict[int, tuple[int, int]] = {}
        self.bad_lines: list[tuple[str, int, str]] = []  # (label file, line number, reason)
        self._load(split_images(self.yaml_file, data, self.root, split))

    def _load(self, images: list[Path]) -> None:
        n_classes = len(self.class_names) - 1
        self.image_ids: list[str] = []
        self._paths: list[Path] = []
        self._boxes: list[np.ndarray] = []  # normalised corner form [K,4]
        self._labels: list[np.ndarray] = []
        counts = {"listed": len(images), "missing_images": 0, "background": 0, "background_dropped": 0,
                  "no_label_file": 0, "boxes": 0, "bad_lines": 0, "duplicate_lines": 0, "all_lines_bad": 0}
        missing: list[str] = []
        all_bad: list[str] = []
        first_unlabelled: Path | None = None
        for image in images:
            if not image.is_file():
                counts["missing_images"] += 1
                missing.append(str(image))
                continue
            bad_before = counts["bad_lines"]
            rows = self._read_labels(label_path(image), n_classes, counts)
            if not rows and counts["bad_lines"] > bad_before:
                # its objects are there but unreadable: as a background image it would teach the
                # net that they are background, so it is left out
                counts["all_lines_bad"] += 1
                all_bad.append(str(image))
                continue
            if not rows:
                if first_unlabelled is None and not label_path(image).exists():
                    first_unlabelled = image
                counts["background"] += 1
                if not self.keep_empty:
                    counts["background_dropped"] += 1
                    continue
            arr = np.array([r[1:] for r in rows], dtype=np.float32).reshape(-1, 4)
            self.image_ids.append(self._image_id(image))
            self._paths.append(image)
            self._boxes.append(arr)
            self._labels.append(np.array([r[0] + 1 for r in rows], dtype=np.int64))
            counts["boxes"] += len(rows)
        counts["images"] = len(self.image_ids)
        orphans = _orphan_labels(images)
        counts["labels_without_image"] = len(orphans)
        self.stats = counts
        found = counts["listed"] - counts["missing_images"]
        problems = []
        if orphans:
            problems.append(f"{len(orphans)} label files have no image of a supported type beside them, so their "
                            f"boxes are not used (e.g. {format_ids(orphans, 2)}; image types read: "
                            f"{' '.join(IMAGE_EXTENSIONS)})")
        if found and counts["no_label_file"] == found:
            # almost always labels in the wrong place; a training split of background images only
            # would "train" on zero boxes, so that is refused; val/test may be all negatives
            msg = (f"none of the {found} images has a label file (e.g. {label_path(first_unlabelled)} for "
                   f"{first_unlabelled}; labels are found by replacing the last /images/ of an image's path "
                   f"with /labels/ and its extension with .txt)")
            if self.split == "train":
                raise UserError(f"YOLO dataset {self.yaml_file} ({self.split}): {msg}")
            problems.append(msg)
        if missing:
            problems.append(f"{len(missing)} listed images not found (e.g. {format_ids(missing, 3)})")
        if all_bad:
            problems.append(f"{len(all_bad)} images left out because no line of their label file is usable "
                            f"(e.g. {format_ids(all_bad, 2)})")
        if counts["bad_lines"]:
            problems.append(f"{counts['bad_lines']} bad label lines skipped (first: "
                            f"{self.bad_lines[0][0]}:{self.bad_lines[0][1]}: {self.bad_lines[0][2]})")
        if counts["duplicate_lines"]:
            problems.append(f"{counts['duplicate_lines']} duplicate label lines ignored")
        empty = f"{counts['background']} background images " + \
            ("kept" if self.keep_empty else "dropped")
        msg = (f"YOLO {self.yaml_file} ({self.split}): {counts['images']} of {counts['listed']} images "
               f"({empty}), {counts['boxes']} boxes, {n_classes} classes"
               + ("; " + "; ".join(problems) if problems else ""))
        (log.warning if problems else log.info)(msg)
        if not self.image_ids:
            raise UserError(f"YOLO dataset {self.yaml_file} ({self.split}): no usable images "
                            f"({counts['listed']} listed, {counts['missing_images']} not found, "
                            f"{counts['all_lines_bad']} with only bad label lines, "
                            f"{counts['background_dropped']} background images dropped)")

    def _image_id(self, image: Path) -> str:
        try:
            return image.relative_to(self.root).as_posix()
        except ValueError:
            return image.as_posix()

    def _bad(self, file: Path, line: int, reason: str, counts: dict) -> None:
        counts["bad_lines"] += 1
        self.bad_lines.append((str(file), line, reason))
        if len(self.bad_lines) <= LOGGED_BAD_LINES:
            log.warning("%s:%d: %s; line skipped", file, line, reason)

    def _read_labels(self, file: Path, n_classes: int, counts: dict) -> list[tuple]:
        try:
            text = file.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            counts["no_label_file"] += 1
            return []
        except UnicodeDecodeError:
            self._bad(file, 1, "label file is not UTF-8 text", counts)
            return []
        except OSError as e:
            raise UserError(f"cannot read label file {file}: {e.strerror or e}") from None
        rows: list[tuple] = []
        seen: set[tuple] = set()
        for k, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            r = _parse_line(line, n_classes)
            if isinstance(r, str):
                self._bad(file, k, r, counts)
                continue
            if r in seen:
                counts["duplicate_lines"] += 1
                continue
            seen.add(r)
            rows.append(r)
        return rows

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        return self._paths[index]

    def normalized_target(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(boxes float32 [K,4] corner form in 0..1 of the image, labels int64 [K])."""
        index = self._check_index(index)
        return self._boxes[index].copy(), self._labels[index].copy()

    def get_annotation(self, index: int) -> tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        index = self._check_index(index)
        if index not in self._sizes:
            from vision.datasets.image_size import image_size

            self._sizes[index] = image_size(self.image_path(index))
        boxes, labels = self._target(index, *self._sizes[index])
        return self.image_ids[index], (boxes, labels.copy(), np.zeros(len(labels), dtype=np.uint8))

    def _target(self, index: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        self._sizes[index] = (width, height)
        scale = np.array([width, height, width, height], dtype=np.float32)
        return self._boxes[index] * scale, self._labels[index]

