"""COCO train and val files that list different categories must still number the classes the same way.

An unfixed COCO file is numbered by its categories in order of their ids; a val file lacking one of
the training categories would shift every later label by one (a "cat" box scored as "dog"). The
validation split follows the training split's numbering, or is refused in one line.
"""
import json

import pytest

from vision.datasets.coco_dataset import COCODataset
from vision.training.dataset_folders import open_dataset
from vision.utils.misc import UserError


@pytest.fixture()
def coco(tmp_path):
    from vision.datasets.synthetic import generate_coco_dataset
    root = tmp_path / "coco"
    generate_coco_dataset(root, 6, 8, seed=2, image_size=(96, 72))
    return root


def _edit_val(root, edit):
    f = root / "annotations" / "instances_val2017.json"
    data = json.loads(f.read_text())
    edit(data)
    f.write_text(json.dumps(data))
    return data


def _drop_category(data, cid):
    data["categories"] = [c for c in data["categories"] if c["id"] != cid]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != cid]


def test_val_without_a_category_keeps_the_training_labels(coco):
    train = COCODataset(coco, dataset_type="train")
    data = _edit_val(coco, lambda d: _drop_category(d, 3))  # "green square", label 2 in train
    alone = COCODataset(coco, dataset_type="val")
    assert len(alone.class_names) == len(train.class_names) - 1  # its own numbering: shifted (the old bug)
    val = COCODataset(coco, dataset_type="val", reference_categories=train.categories)
    assert val.class_names == train.class_names
    assert val.label_to_category_id == train.label_to_category_id
    # every box of val gets the label train gives its category
    names = {c["id"]: c["name"] for c in data["categories"]}
    seen = 0
    for i in range(len(val)):
        image_id, (boxes, labels, _) = val.get_annotation(i)
        anns = [a for a in data["annotations"] if a["image_id"] == image_id]
        assert sorted(val.class_names[int(k)] for k in labels) == sorted(names[a["category_id"]] for a in anns)
        seen += len(labels)
    assert seen > 0
    assert "green square" not in {val.class_names[int(k)] for i in range(len(val)) for k in val.get_annotation(i)[1][1]}


def test_open_dataset_passes_the_training_numbering(coco):
    _edit_val(coco, lambda d: _drop_category(d, 1))
    train = open_dataset("coco", coco, split="train")
    val = open_dataset("coco", coco, split="val", reference=train)
    assert val.class_names == train.class_names


def test_val_category_unknown_to_training_is_refused(coco):
    train = COCODataset(coco, dataset_type="train")
    _edit_val(coco, lambda d: d["categories"].append({"id": 50, "name": "orange moon", "supercategory": "x"}))
    with pytest.raises(UserError) as e:
        COCODataset(coco, dataset_type="val", reference_categories=train.categories)
    msg = str(e.value)
    assert "\n" not in msg and "orange moon" in msg and "fix_coco_annotations.py" in msg


def test_same_id_other_name_is_refused(coco):
    train = COCODataset(coco, dataset_type="train")

    def rename(d):
        d["categories"][0]["name"] = "purple circle"
    _edit_val(coco, rename)
    with pytest.raises(UserError) as e:
        COCODataset(coco, dataset_type="val", reference_categories=train.categories)
    assert "purple circle" in str(e.value) and "fix_coco_annotations.py" in str(e.value)
