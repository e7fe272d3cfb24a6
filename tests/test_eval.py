"""Evaluation: VOC protocol (hand-computed and against an independent implementation), COCO numbers
exactly pycocotools', evaluate() end to end with an oracle net, and eval_ssd.py via subprocess."""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vision.evaluation import compute_metrics, evaluate
from vision.evaluation.coco import coco_results
from vision.evaluation.detection import ImageDetections
from vision.evaluation.voc import GroundTruth, voc_average_precisions
from vision.utils.misc import UserError

from tests.conftest import REPO, run_script


# ----------------------------------------------------------------------------- helpers
def _det(boxes, labels, scores) -> ImageDetections:
    return ImageDetections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
                           np.asarray(scores, np.float32))


def _iou_one(box, gts):
    """IoU of one box with each ground-truth box (plain arithmetic, independent of the code under test)."""
    out = []
    for g in gts:
        iw = max(0.0, min(box[2], g[2]) - max(box[0], g[0]))
        ih = max(0.0, min(box[3], g[3]) - max(box[1], g[1]))
        inter = iw * ih
        union = (box[2] - box[0]) * (box[3] - box[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
        out.append(inter / union if union > 0 else 0.0)
    return out


def _reference_voc_ap(dets, gts, cls, iou_thr, use_07):
    """The classic devkit loop (py-faster-rcnn voc_eval style): one global score-sorted list."""
    recs = {}
    npos = 0
    for i, gt in enumerate(gts):
        m = gt.labels == cls
        recs[i] = {"bbox": gt.boxes[m].tolist(), "difficult": gt.difficult[m].tolist(),
                   "det": [False] * int(m.sum())}
        npos += int((~gt.difficult[m]).sum())
    items = [(float(s), i, b.tolist()) for i, d in enumerate(dets)
             for b, l, s in zip(d.boxes, d.labels, d.scores) if l == cls]
    items.sort(key=lambda t: -t[0])
    tp, fp = [], []
    for _, i, box in items:
        r = recs[i]
        ovmax, jmax = -1.0, -1
        if r["bbox"]:
            ious = _iou_one(box, r["bbox"])
            jmax = int(np.argmax(ious))
            ovmax = ious[jmax]
        if ovmax > iou_thr:
            if r["difficult"][jmax]:
                continue  # neither true nor false positive
            if not r["det"][jmax]:
                r["det"][jmax] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        else:
            tp.append(0), fp.append(1)
    if npos == 0:
        return float("nan")
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            ap += (np.max(prec[rec >= t]) if np.sum(rec >= t) > 0 else 0.0) / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _random_boxes(rng, n, w=300, h=200, min_size=10):
    x1 = rng.uniform(0, w - min_size - 1, n)
    y1 = rng.uniform(0, h - min_size - 1, n)
    x2 = np.minimum(w, x1 + rng.uniform(min_size, w / 2, n))
    y2 = np.minimum(h, y1 + rng.uniform(min_size, h / 2, n))
    return np.stack([x1, y1, x2, y2], 1).astype(np.float32)


# ----------------------------------------------------------------------------- VOC protocol
def test_voc_perfect_detections_give_ap_one():
    rng = np.random.default_rng(0)
    gts, dets = [], []
    for _ in range(6):
        n = int(rng.integers(1, 5))
        boxes, labels = _random_boxes(rng, n), rng.integers(1, 4, n)
        gts.append(GroundTruth(boxes, labels))
        dets.append(_det(boxes, labels, rng.uniform(0.1, 1.0, n)))
    for use_07 in (True, False):
        aps = voc_average_precisions(dets, gts, 4, 0.5, use_07)
        present = set(np.concatenate([g.labels for g in gts]).tolist())
        for c in present:
            assert aps[c] == pytest.approx(1.0)


def test_voc_shifted_box_matches_hand_computed_ap():
    a = [[0, 0, 100, 100], [150, 0, 250, 100]]
    b = [[0, 0, 50, 50], [100, 100, 200, 180]]
    gts = [GroundTruth(a, [1, 1]), GroundTruth(b, [1, 1])]
    shifted = [150 + 60, 0, 250 + 60, 100]  # IoU with its box 40*100 / (2*100*100 - 4000) = 0.25
    dets = [_det([a[0], shifted], [1, 1], [0.9, 0.7]), _det([b[0], b[1]], [1, 1], [0.8, 0.6])]
    # ranked: TP (.9), TP (.8), FP (.7), TP (.6); 4 ground-truth boxes
    aps07 = voc_average_precisions(dets, gts, 2, 0.5, use_2007_metric=True)
    aps = voc_average_precisions(dets, gts, 2, 0.5, use_2007_metric=False)
    assert aps[1] == pytest.approx(0.25 + 0.25 + 0.25 * 0.75)
    assert aps07[1] == pytest.approx(7.5 / 11)


def test_voc_duplicate_detection_is_false_positive():
    gts = [GroundTruth([[0, 0, 100, 100]], [1])]
    dets = [_det([[0, 0, 100, 100], [1, 1, 100, 100]], [1, 1], [0.9, 0.95])]
    # the better-scored duplicate is the TP, the other one a FP after full recall: AP stays 1
    assert voc_average_precisions(dets, gts, 2, 0.5)[1] == pytest.approx(1.0)
    dets = [_det([[0, 0, 100, 100], [1, 1, 100, 100], [0, 0, 100, 100]], [1, 1, 1], [0.5, 0.95, 0.9])]
    gts = [GroundTruth([[0, 0, 100, 100], [200, 0, 300, 100]], [1, 1])]
    # TP (.95), FP (.9), FP (.5): precision 1 at recall .5, recall never reaches 1
    assert voc_average_precisions(dets, gts, 2, 0.5)[1] == pytest.approx(0.5)


def test_voc_difficult_boxes_are_ignored():
    gts = [GroundTruth([[0, 0, 100, 100], [200, 0, 300, 100]], [1, 1], [False, True])]
    # best-scored detection hits the difficult box: neither TP nor FP; recall counts 1 box only
    dets = [_det([[200, 0, 300, 100], [0, 0, 100, 100]], [1, 1], [0.95, 0.9])]
    assert voc_average_precisions(dets, gts, 2, 0.5)[1] == pytest.approx(1.0)
    # same boxes without the difficult flag: both are TPs, but a missed box would now count
    gts_plain = [GroundTruth([[0, 0, 100, 100], [200, 0, 300, 100]], [1, 1])]
    only_first = [_det([[0, 0, 100, 100]], [1], [0.9])]
    assert voc_average_precisions(only_first, gts, 2, 0.5)[1] == pytest.approx(1.0)
    assert voc_average_precisions(only_first, gts_plain, 2, 0.5)[1] == pytest.approx(0.5)


def test_voc_class_without_ground_truth_is_nan_and_left_out_of_the_mean():
    class DS:
        class_names = ["BACKGROUND", "a", "b"]

        def __len__(self):
            return 1

        def get_annotation(self, i):
            return "img0", (np.array([[0, 0, 10, 10]], np.float32), np.array([1]), np.array([0], np.uint8))

    m = compute_metrics(DS(), [_det([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 2], [0.9, 0.8])])
    assert m["per_class"]["a"] == pytest.approx(1.0)
    assert math.isnan(m["per_class"]["b"])
    assert m["mAP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("use_07", [True, False])
def test_voc_agrees_with_independent_implementation(seed, use_07):
    rng = np.random.default_rng(seed)
    num_classes = 4
    gts, dets = [], []
    for _ in range(12):
        n = int(rng.integers(0, 6))
        boxes, labels = _random_boxes(rng, n), rng.integers(1, num_classes, n)
        difficult = rng.random(n) < 0.2
        gts.append(GroundTruth(boxes, labels, difficult))
        # detections: jittered copies of some ground truth (some duplicated) plus random boxes
        keep = rng.random(n) < 0.7
        jit = boxes[keep] + rng.normal(0, 8, (int(keep.sum()), 4)).astype(np.float32)
        dup = jit[: int(rng.integers(0, len(jit) + 1))] + 2
        rand = _random_boxes(rng, int(rng.integers(0, 5)))
        all_boxes = np.concatenate([jit, dup, rand])
        all_labels = np.concatenate([labels[keep], labels[keep][: len(dup)],
                                     rng.integers(1, num_classes, len(rand))])
        dets.append(_det(all_boxes, all_labels, rng.random(len(all_boxes))))
    aps = voc_average_precisions(dets, gts, num_classes, 0.5, use_07)
    for c in range(1, num_classes):
        ref = _reference_voc_ap(dets, gts, c, 0.5, use_07)
        if math.isnan(ref):
            assert math.isnan(aps[c])
        else:
            assert aps[c] == pytest.approx(ref, abs=1e-12)


# ----------------------------------------------------------------------------- COCO protocol
@pytest.fixture(scope="module")
def synthetic_coco(tmp_path_factory):
    """Two synthetic COCO-layout datasets with the same images: original ids and renumbered ("fixed")."""
    from vision.datasets.synthetic import generate_coco_dataset

    base = tmp_path_factory.mktemp("coco")
    generate_coco_dataset(base / "orig", 0, 6, seed=3)
    generate_coco_dataset(base / "fixed", 0, 6, seed=3, fixed=True)
    return base


def _coco_dataset(root):
    from vision.datasets.coco_dataset import COCODataset

    return COCODataset(root, dataset_type="val")


def _noisy_detections(dataset, seed=0):
    """Jittered ground truth (some missed, some mislabeled) plus random false positives."""
    rng = np.random.default_rng(seed)
    dets = []
    num_classes = len(dataset.class_names)
    for i in range(len(dataset)):
        _, (boxes, labels, _) = dataset.get_annotation(i)
        keep = rng.random(len(labels)) < 0.8
        b = boxes[keep] + rng.normal(0, 3, (int(keep.sum()), 4)).astype(np.float32)
        l = labels[keep].copy()
        flip = rng.random(len(l)) < 0.15
        l[flip] = rng.integers(1, num_classes, int(flip.sum()))
        fp = _random_boxes(rng, 3, 300, 220)
        b = np.concatenate([b, fp])
        l = np.concatenate([l, rng.integers(1, num_classes, 3)])
        dets.append(_det(b, l, rng.random(len(l))))
    return dets


def _cocoeval_stats(ann_file, results_file, img_ids):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        dt = gt.loadRes(str(results_file))
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.array(ev.stats)


def test_coco_numbers_are_exactly_pycocotools(synthetic_coco, tmp_path):
    ds = _coco_dataset(synthetic_coco / "orig")
    dets = _noisy_detections(ds)
    m = compute_metrics(ds, dets, coco_backend="pycocotools")
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(m["results"]))
    ref = _cocoeval_stats(ds.ann_file, results_file, [ds.coco_image_id(i) for i in range(len(ds))])
    np.testing.assert_array_equal(np.array(m["stats"]), ref)
    assert m["mAP"] == ref[0] and m["AP50"] == ref[1]
    assert 0.0 < m["mAP"] < 1.0
    assert set(m["per_class"]) == set(ds.class_names[1:])


def test_coco_renumbered_annotations_give_original_ids_and_same_numbers(synthetic_coco, tmp_path):
    orig, fixed = _coco_dataset(synthetic_coco / "orig"), _coco_dataset(synthetic_coco / "fixed")
    dets = _noisy_detections(orig, seed=1)
    m_orig, m_fixed = compute_metrics(orig, dets), compute_metrics(fixed, dets)
    assert m_fixed["stats"] == m_orig["stats"]
    original_ids = {c["id"] for c in json.loads(Path(orig.ann_file).read_text())["categories"]}
    assert {r["category_id"] for r in m_fixed["results"]} <= original_ids
    assert m_fixed["results"] == m_orig["results"]
    assert max(original_ids) > len(original_ids)  # the gapped ids really differ from 1..K


def test_coco_restricted_to_evaluated_images(synthetic_coco, tmp_path):
    """Evaluating a subset must not count the other images' ground truth as missed."""
    ds = _coco_dataset(synthetic_coco / "orig")

    class Subset:
        def __init__(self, base, idx):
            self.base, self.idx = base, idx
            self.ann_file, self.class_names = base.ann_file, base.class_names
            self.label_to_category_id = base.label_to_category_id

        def __len__(self):
            return len(self.idx)

        def coco_image_id(self, i):
            return self.base.coco_image_id(self.idx[i])

        def get_annotation(self, i):
            return self.base.get_annotation(self.idx[i])

    sub = Subset(ds, [0, 2])
    perfect = []
    for i in range(len(sub)):
        _, (boxes, labels, crowd) = sub.get_annotation(i)
        perfect.append(_det(boxes[crowd == 0], labels[crowd == 0], np.linspace(0.9, 0.5, int((crowd == 0).sum()))))
    m = compute_metrics(sub, perfect)
    assert m["mAP"] == pytest.approx(1.0)


def test_coco_without_detections_scores_zero(synthetic_coco):
    ds = _coco_dataset(synthetic_coco / "orig")
    m = compute_metrics(ds, [ImageDetections.empty() for _ in range(len(ds))])
    assert m["mAP"] == 0.0 and m["results"] == []
    assert len(m["stats"]) == 12


def test_coco_results_format():
    dets = [_det([[10, 20, 40, 80]], [2], [0.5]), ImageDetections.empty()]
    res = coco_results(dets, [7, 8], {1: 1, 2: 3})
    assert res == [{"image_id": 7, "category_id": 3, "bbox": [10.0, 20.0, 30.0, 60.0], "score": 0.5}]


# ----------------------------------------------------------------------------- evaluate() end to end
class OracleNet(torch.nn.Module):
    """Test-mode "net" that recognises each preprocessed image and returns its ground truth
    (normalized boxes) as detections: whatever goes wrong between dataset and metrics shows."""

    is_test = True

    def __init__(self, dataset, size=64):
        super().__init__()
        from vision.ssd.config.base import SSDConfig
        from vision.ssd.data_preprocessing import PredictionTransform

        self.config = SSDConfig(image_size=size, image_mean=np.zeros(3, np.float32), image_std=1.0,
                                iou_threshold=0.45, center_variance=0.1, size_variance=0.2,
                                priors=torch.zeros(1, 4))
        self.num_classes = len(dataset.class_names)
        t = PredictionTransform(size, 0.0, 1.0)
        self.keys = torch.stack([t(dataset.get_image(i)) for i in range(len(dataset))])
        self.targets = []
        for i in range(len(dataset)):
            _, (boxes, labels, _) = dataset.get_annotation(i)
            h, w = dataset.get_image(i).shape[:2]
            self.targets.append((torch.as_tensor(boxes) / torch.tensor([w, h, w, h]), torch.as_tensor(labels)))
        self.n = max(1, max(len(l) for _, l in self.targets))

    def forward(self, x):
        b = x.size(0)
        scores = torch.zeros(b, self.n, self.num_classes)
        scores[:, :, 0] = 1.0
        boxes = torch.zeros(b, self.n, 4)
        for k in range(b):
            j = int((self.keys - x[k]).abs().flatten(1).amax(1).argmin())
            tb, tl = self.targets[j]
            scores[k, : len(tl)] = 0.0
            scores[k, torch.arange(len(tl)), tl] = 1.0 - 0.01 * torch.arange(len(tl), dtype=torch.float32)
            boxes[k, : len(tl)] = tb
        return scores, boxes


class TinyVOC:
    """In-memory VOC-style dataset: distinct images, known boxes, a transform that must not be used."""

    class_names = ["BACKGROUND", "a", "b", "c"]

    def __init__(self, n=7, seed=0):
        rng = np.random.default_rng(seed)
        self.images, self.anns = [], []
        for i in range(n):
            h, w = int(rng.integers(80, 160)), int(rng.integers(80, 160))
            self.images.append(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            k = int(rng.integers(1, 4))
            self.anns.append((_random_boxes(rng, k, w, h), rng.integers(1, 4, k).astype(np.int64),
                              np.zeros(k, np.uint8)))
        self.transform = self._forbidden

    @staticmethod
    def _forbidden(*a):
        raise AssertionError("evaluation must not use the dataset's own transform")

    def __len__(self):
        return len(self.images)

    def get_image(self, i):
        return self.images[i].copy()

    def get_annotation(self, i):
        return f"img{i}", self.anns[i]


def test_evaluate_oracle_voc_is_perfect_and_leaves_dataset_alone():
    ds = TinyVOC()
    net = OracleNet(ds)
    m = evaluate(net, ds, batch_size=3)
    assert m["mAP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in m["per_class"].values() if not math.isnan(v))
    assert m["images_per_s"] > 0 and m["num_images"] == len(ds)
    assert ds.transform == TinyVOC._forbidden


def test_evaluate_oracle_coco_is_perfect(synthetic_coco):
    ds = _coco_dataset(synthetic_coco / "fixed")
    net = OracleNet(ds)
    m = evaluate(net, ds, batch_size=4, top_k=100)
    # crowd regions come back as detections too: COCOeval ignores matches to crowd, so AP stays 1
    assert m["stats"][0] == pytest.approx(1.0)
    assert m["mAP"] == m["stats"][0]


def test_evaluate_training_mode_net_equals_test_mode(synthetic_coco):
    from vision.ssd.registry import create_net

    ds = _coco_dataset(synthetic_coco / "orig")
    torch.manual_seed(0)
    train_net = create_net("mb1-ssd-lite", len(ds.class_names), resolution=128, is_test=False)
    test_net = create_net("mb1-ssd-lite", len(ds.class_names), resolution=128, is_test=True)
    test_net.load_state_dict(train_net.state_dict())
    train_net.train()
    m_train = evaluate(train_net, ds, batch_size=4, prob_threshold=0.05)
    assert train_net.training, "evaluate must restore the caller's training mode"
    m_test = evaluate(test_net, ds, batch_size=2, prob_threshold=0.05)
    assert len(m_train["results"]) == len(m_test["results"]) > 0
    for a, b in zip(m_train["results"], m_test["results"]):
        assert a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"]
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=0.02)
    assert m_train["stats"] == pytest.approx(m_test["stats"], abs=1e-6)


def test_unreadable_image_is_one_line_user_error():
    ds = TinyVOC(n=3)

    def broken(i):
        raise UserError(f"cannot read image img{i}.jpg: truncated")

    ds.get_image = broken
    net = OracleNet(TinyVOC(n=3))
    with pytest.raises(UserError) as e:
        evaluate(net, ds, batch_size=2)
    assert str(e.value) == "cannot read image img0.jpg: truncated"


# ----------------------------------------------------------------------------- eval_ssd.py
def _run(args, cwd=REPO):
    return run_script(*args, cwd=cwd)


def _save_checkpoint(folder: Path, class_names, net_name="mb1-ssd-lite", resolution=128, seed=0):
    from vision.ssd.registry import create_net

    torch.manual_seed(seed)
    net = create_net(net_name, len(class_names), resolution=resolution)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = {"epoch": 0, "step_in_epoch": 0, "model": net.state_dict(), "class_names": list(class_names),
            "net": net_name, "resolution": resolution,
            "args": {"net": net_name, "resolution": resolution, "mb2_width_mult": 1.0, "dataset_type": "coco"}}
    torch.save(ckpt, folder / "best.pth")
    return net


@pytest.mark.slow
def test_eval_ssd_coco_val_and_test_dev(synthetic_coco, tmp_path):
    root = synthetic_coco / "fixed"
    ds = _coco_dataset(root)
    _save_checkpoint(tmp_path / "run", ds.class_names)
    # test-dev layout: image list without ground truth, images in test2017/
    info = json.loads(Path(ds.ann_file).read_text())
    (root / "test2017").mkdir(exist_ok=True)
    for im in info["images"][:3]:
        (root / "test2017" / im["file_name"]).write_bytes((root / "val2017" / im["file_name"]).read_bytes())
    cats = [{"id": c["original_id"], "name": c["name"], "supercategory": c["supercategory"]} for c in info["categories"]]
    (root / "annotations" / "image_info_test-dev2017.json").write_text(
        json.dumps({"images": info["images"][:3], "categories": cats}))

    out = tmp_path / "eval"
    r = _run(["eval_ssd.py", "--trained-model", tmp_path / "run", "--dataset", root, "--dataset-type", "coco",
              "--eval-dir", out, "--workers", "0", "--batch-size", "4", "--prob-threshold", "0.05",
              "--coco-backend", "pycocotools"])
    assert r.returncode == 0, r.stderr
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in r.stdout
    results = json.loads((out / "detections_val2017_mb1-ssd-lite_results.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["coco_backend"] == "pycocotools"
    assert len(metrics["stats"]) == 12 and metrics["num_images"] == len(ds)
    assert {r_["category_id"] for r_ in results} <= {c["id"] for c in cats}  # original (gapped) ids
    # the file scores exactly as reported
    ref = _cocoeval_stats(ds.ann_file, _to_fixed_ids(results, info, tmp_path),
                          [ds.coco_image_id(i) for i in range(len(ds))])
    np.testing.assert_allclose(list(metrics["stats"].values()), ref, rtol=0, atol=0)

    r = _run(["eval_ssd.py", "--trained-model", tmp_path / "run", "--dataset", root, "--dataset-type", "coco",
              "--split", "test-dev", "--eval-dir", out, "--workers", "0", "--alg-name", "mine"])
    assert r.returncode == 0, r.stderr
    zpath = out / "detections_test-dev2017_mine_results.zip"
    with zipfile.ZipFile(zpath) as z:
        assert z.namelist() == ["detections_test-dev2017_mine_results.json"]
        sub = json.loads(z.read(z.namelist()[0]))
    assert {d["image_id"] for d in sub} <= {im["id"] for im in info["images"][:3]}
    assert {d["category_id"] for d in sub} <= {c["id"] for c in cats}


def _to_fixed_ids(results, info, tmp_path):
    """Results with ids of the renumbered annotation file, for running COCOeval on it directly."""
    to_file = {c["original_id"]: c["id"] for c in info["categories"]}
    path = tmp_path / "fixed_ids_results.json"
    path.write_text(json.dumps([dict(r, category_id=to_file[r["category_id"]]) for r in results]))
    return path


def _write_voc(root: Path, n=3, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    names = ["BACKGROUND", "cat", "dog"]
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    ids = []
    for i in range(n):
        image_id = f"{i:06d}"
        ids.append(image_id)
        img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), img)
        ann = ET.Element("annotation")
        size = ET.SubElement(ann, "size")
        ET.SubElement(size, "width").text, ET.SubElement(size, "height").text = "160", "120"
        for k, name in enumerate(["cat", "dog"][: 1 + i % 2]):
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = name
            ET.SubElement(obj, "difficult").text = "0"
            bb = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (10 + 40 * k, 10, 60 + 40 * k, 90)):
                ET.SubElement(bb, tag).text = str(v)
        ET.ElementTree(ann).write(root / "Annotations" / f"{image_id}.xml")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")
    (root / "labels.txt").write_text("\n".join(names) + "\n")
    return names


@pytest.mark.slow
def test_eval_ssd_voc_upstream_flags_and_errors(tmp_path):
    from vision.ssd.registry import create_net

    names = _write_voc(tmp_path / "voc")
    torch.manual_seed(0)
    net = create_net("mb1-ssd-lite", len(names))
    torch.save(net.state_dict(), tmp_path / "plain.pth")  # upstream-style bare state_dict
    out = tmp_path / "eval"
    r = _run(["eval_ssd.py", "--net", "mb1-ssd-lite", "--trained_model", tmp_path / "plain.pth",
              "--dataset", tmp_path / "voc", "--label_file", tmp_path / "voc" / "labels.txt",
              "--eval_dir", out, "--use_cuda", "false", "--workers", "0", "--use_2007_metric", "false",
              "--resolution", "128"])
    assert r.returncode == 0, r.stderr
    assert "Average Precision Across All Classes" in r.stdout
    assert (out / "det_test_cat.txt").is_file() and (out / "det_test_dog.txt").is_file()
    line = (out / "det_test_cat.txt").read_text().splitlines()[0].split()
    assert line[0] in {"000000", "000001", "000002"} and len(line) == 6
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"cat", "dog"} and metrics["use_2007_metric"] is False

    # a checkpoint of another net: one line, exit 2
    r = _run(["eval_ssd.py", "--net", "mb2-ssd-lite", "--trained_model", tmp_path / "plain.pth",
              "--dataset", tmp_path / "voc", "--label_file", tmp_path / "voc" / "labels.txt", "--eval_dir", out])
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_default_eval_workers_leave_a_small_cpu_to_the_forward(monkeypatch):
    from vision.evaluation import detection

    monkeypatch.setattr(detection.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert detection.default_workers("cpu") == 0
    assert detection.default_workers("cuda") == 2
    monkeypatch.setattr(detection.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert detection.default_workers("cpu") == 2
