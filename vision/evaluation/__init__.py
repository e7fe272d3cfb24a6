"""Detection metrics: batched inference over a dataset, then VOC AP or COCOeval (faster-coco-eval or pycocotools).

``evaluate(net, dataset)`` is the entry point shared by eval_ssd.py and train_ssd.py.
"""
from vision.evaluation.detection import ImageDetections, detect_dataset
from vision.evaluation.evaluate import compute_metrics, evaluate, is_coco_dataset, make_predictor

__all__ = ["ImageDetections", "detect_dataset", "compute_metrics", "evaluate", "is_coco_dataset", "make_predictor"]
