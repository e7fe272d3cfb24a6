"""pytorch-ssd: SSD object detection (nets, priors, box coding, MultiBox loss, data, training, evaluation).

``__version__`` is recorded in every checkpoint and ``args.json``, so a run says which code made it.
"""
__version__ = "1.1.0"
