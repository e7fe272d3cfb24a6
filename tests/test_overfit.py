"""The whole detection chain learns: overfit four synthetic images, then find their objects.

Net, prior matching, MultiBox loss with hard-negative mining, optimizer step, then the
predictor (decode, NMS, scaling to pixels) on the original images. A bug anywhere in box
coding, matching, the loss or post-processing shows up here as a loss that does not fall
or boxes that land in the wrong place. Small on purpose: 128 px, one batch of 4 images.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vision.datasets.coco_dataset import COCODataset
from vision.datasets.collation import collate_padded
from vision.datasets.synthetic import generate_coco_dataset
from vision.nn.multibox_loss import MultiboxLoss
from vision.ssd.data_preprocessing import TestTransform
from vision.ssd.matching import BatchedMatcher
from vision.ssd.registry import create_net, create_predictor
from vision.utils.box_utils import iou_of

RESOLUTION = 128
STEPS = 120


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return iou_of(torch.from_numpy(a).float().unsqueeze(1), torch.from_numpy(b).float().unsqueeze(0)).numpy()


@pytest.mark.slow
def test_mb1_ssd_lite_overfits_four_images_and_the_predictor_finds_their_objects(tmp_path) -> None:
    torch.manual_seed(0)
    generate_coco_dataset(tmp_path, 4, 1, seed=3, image_size=(160, 120))
    probe = COCODataset(tmp_path, dataset_type="train")
    num_classes = len(probe.class_names)
    net = create_net("mb1-ssd-lite", num_classes, resolution=RESOLUTION)
    cfg = net.config
    dataset = COCODataset(tmp_path, transform=TestTransform(RESOLUTION, cfg.image_mean, cfg.image_std),
                          dataset_type="train")
    assert len(dataset) == 4
    images, boxes, labels = collate_padded([dataset[i] for i in range(4)])
    matcher = BatchedMatcher(cfg.priors, cfg.center_variance, cfg.size_variance, 0.5)
    gt_locations, gt_labels = matcher(boxes, labels)
    assert (gt_labels > 0).any(), "no prior matched any box: the test data is wrong"
    criterion = MultiboxLoss(cfg.priors, 0.5, 3, cfg.center_variance, cfg.size_variance)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)

    net.train()
    losses = []
    for _ in range(STEPS):
        confidence, locations = net(images)
        regression, classification = criterion(confidence, locations, gt_labels, gt_locations)
        loss = regression + classification
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    first, last = losses[0], float(np.mean(losses[-5:]))
    assert last <= 0.2 * first, f"total loss fell only from {first:.3f} to {last:.3f} (need >= 80 %)"

    predictor = create_predictor(net, filter_threshold=0.3)
    found = total = 0
    for i in range(4):
        image = probe.get_image(i)
        _, (gt_boxes, gt_labels_i, crowd) = probe.get_annotation(i)
        gt_boxes, gt_labels_i = gt_boxes[crowd == 0], gt_labels_i[crowd == 0]  # crowd boxes are not trained on
        det_boxes, det_labels, _ = predictor.predict(image, top_k=20)
        total += len(gt_boxes)
        if len(det_boxes) == 0:
            continue
        ious = _iou_matrix(gt_boxes, det_boxes.numpy())  # [gt, det]
        same_class = gt_labels_i[:, None] == det_labels.numpy()[None, :]
        found += int(((ious >= 0.5) & same_class).any(axis=1).sum())
    assert total > 0
    assert found >= 0.9 * total, f"the predictor found {found} of {total} training objects (IoU >= 0.5, right class)"
