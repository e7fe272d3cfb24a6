"""count_boxes / require_boxes: a set without a single box is refused before training or scoring."""
import json

import pytest
from torch.utils.data import ConcatDataset

from vision.datasets.base import count_boxes, require_boxes
from vision.datasets.coco_dataset import COCODataset
from vision.datasets.synthetic import generate_coco_dataset
from vision.utils.misc import UserError


def test_counts_from_annotations_and_refuses_a_set_without_boxes(tmp_path):
    summary = generate_coco_dataset(tmp_path / "syn", 6, 3, seed=4)
    train = COCODataset(tmp_path / "syn", dataset_type="train")
    expected = summary["splits"]["train"]["boxes"]  # crowd regions are not trained on
    assert count_boxes(train) == expected > 0
    assert count_boxes(ConcatDataset([train, train])) == 2 * expected
    require_boxes(train, "training", "syn")  # fine

    ann = tmp_path / "syn" / "annotations" / "instances_train2017.json"
    coco = json.loads(ann.read_text())
    coco["annotations"] = []
    ann.write_text(json.dumps(coco))
    empty = COCODataset(tmp_path / "syn", dataset_type="train")
    assert count_boxes(empty) == 0
    with pytest.raises(UserError, match="not one box"):
        require_boxes(empty, "training", str(tmp_path / "syn"))
    assert count_boxes([1, 2]) is None  # not a dataset of ours: unknown, never refused
    require_boxes([1, 2], "evaluation", "x")
