#!/usr/bin/env python3
"""Train an SSD detector on COCO, Pascal VOC or Open Images.

A checkpoint folder is a complete, self-describing training run: ``args.json`` (every
argument), ``labels.txt``, one ``{net}-Epoch-{e}-Loss-{val_loss}.pth`` per saved epoch
(weights, optimizer, schedule, AMP scaler, random states), ``best.pth`` and
``metrics.jsonl``. ``--resume FOLDER`` continues such a run exactly where it stopped,
even in the middle of an epoch after Ctrl-C / SIGTERM.

  python3 train_ssd.py --dataset-type coco --datasets coco-data --net mb2-ssd-lite \\
      --epochs 100 --workers 12 --checkpoint-folder models/run1
  python3 train_ssd.py --resume models/run1                # continue it
  python3 train_ssd.py --resume models/run1 --epochs 150   # ... for longer
  torchrun --nproc_per_node 4 train_ssd.py ...              # DistributedDataParallel
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

# Compute threads that spin while they wait (libgomp's default) lose most of their time when
# they share the cores with data workers or other processes: 2-4x slower steps on a 2-core
# machine (bench/README.md, "Training"). Read once, when torch loads libgomp; the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.utils.data import ConcatDataset, Dataset, default_collate
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from vision.cli.args import (add_dataset_type_arg, add_device_args, add_resolution_arg, add_width_mult_arg,
                             choose_device)
from vision.datasets.base import require_boxes
from vision.datasets.collation import collate_padded
from vision.evaluation.evaluate import describe_map
from vision.nn.multibox_loss import DEFAULT_MINING
from vision.ssd.config.base import SSDConfig, build_criterion, build_matcher
from vision.ssd.custom_priors import priors_spec_arg, resume_priors_arg
from vision.ssd.data_preprocessing import TestTransform, TrainAugmentation
from vision.ssd.model_io import infer_num_classes, load_net_weights
from vision.ssd.registry import NET_NAMES, canonical_name, create_net, get_config
from vision.training import distributed
from vision.training.checkpoint import (TrainingCheckpoint, capture_rng_state, check_run_id, checkpoint_name,
                                        find_latest_valid_checkpoint, link_best, prune_checkpoints,
                                        remove_stale_temp_files_in, restore_rng_state)
from vision.training.compute import compile_or_eager, use_channels_last
from vision.training.data import (EpochLoader, ReseededTransform, batches_per_epoch, build_loader,
                                  seed_everything)
from vision.training.dataset_folders import open_dataset
from vision.training.ema import DEFAULT_WARMUP_STEPS, WeightEMA, checkpoint_weights, restore_weights
from vision.training.loop import EpochStats, NonFiniteGuard, StopRequest, Trainer
from vision.training.optim import OPTIMIZERS, build_optimizer, param_groups
from vision.training.profiling import StepProfiler
from vision.training.resume import merge_resume_args
from vision.training.run_folder import (append_metrics, archive_run, check_writable_folder, existing_run,
                                        finish_saved_epoch, new_run_id, project_version, read_args_json,
                                        write_run_description)
from vision.training.schedule import SCHEDULERS, StepLRSchedule
from vision.training.viz_inputs import write_input_samples
from vision.utils.box_utils import MINING_RULES
from vision.utils.misc import (ArgumentParser, Failure, UserError, add_log_level_arg, float_range, int_range,
                               positive_float, positive_int, run_main, setup_logging, unit_float)
from vision.utils.model_io import load_state_dict_file

log = logging.getLogger("train_ssd")

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


# ----------------------------------------------------------------------------------- arguments
def _milestones(s: str) -> list[int]:
    """``"80,100"`` (upstream's form) -> [80, 100]."""
    try:
        values = [positive_int(v.strip()) for v in str(s).split(",") if v.strip()]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"milestones: {e}") from None
    if not values or values != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"expected increasing epoch numbers like 80,100, got {s!r}")
    return values


EPILOG = """examples:
  python3 train_ssd.py --dataset-type coco --datasets coco-data --net mb2-ssd-lite --epochs 100 \\
      --workers 12 --checkpoint-folder models/coco-mb2
  python3 train_ssd.py --resume models/coco-mb2                 # continue (also after Ctrl-C)
  python3 train_ssd.py --resume models/coco-mb2 --epochs 150 --workers 8
  torchrun --nproc_per_node 4 train_ssd.py ...                  # several GPUs / machines

with --resume, flags given again override the saved ones: --epochs, --workers, --batch-size,
--device, --log-level and other runtime knobs freely; --datasets with a warning (same classes
required); anything else (net, resolution, lr, ...) only with --force-override.
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        description="Train an SSD object detector (COCO, VOC or Open Images). The checkpoint folder "
                    "holds a complete run that --resume continues exactly.",
        epilog=EPILOG, formatter_class=_HelpFormatter)
    _add_data_args(p.add_argument_group("data"))
    _add_network_args(p.add_argument_group("network"))
    _add_checkpoint_args(p.add_argument_group("checkpoints"))
    _add_optimizer_args(p.add_argument_group("optimizer"))
    _add_schedule_args(p.add_argument_group("learning rate schedule"))
    _add_training_args(p.add_argument_group("training"))
    add_log_level_arg(p)
    return p


def _add_data_args(g: argparse._ArgumentGroup) -> None:
    """--help group "data": the datasets and how they are read."""
    add_dataset_type_arg(g, "auto", "dataset format (auto: recognised from the folder)")
    g.add_argument("--datasets", "--data", nargs="+", default=["coco-data"], metavar="DIR",
                   help="dataset folder(s); several are concatenated (same classes). COCO: DIR/annotations/"
                        "instances_train2017.json + DIR/train2017")
    g.add_argument("--validation-dataset", "--validation_dataset", default=None, metavar="DIR",
                   help="validation folder (None: the first dataset's validation split: COCO val2017, "
                        "VOC test list, Open Images test)")
    g.add_argument("--balance-data", "--balance_data", action="store_true",
                   help="Open Images: balance classes by down-sampling frequent ones")
    empty = g.add_mutually_exclusive_group()
    empty.set_defaults(keep_empty=True)  # shown once, in the help of the flag that is the default
    empty.add_argument("--keep-empty", dest="keep_empty", action="store_true", default=argparse.SUPPRESS,
                       help="COCO: train on images without boxes too, as background samples (the default)")
    empty.add_argument("--drop-empty", dest="keep_empty", action="store_false", default=argparse.SUPPRESS,
                       help="COCO: leave out images without boxes")
    g.add_argument("--max-expand", type=float_range(1, 16, lo_open=False), default=4.0, metavar="R",
                   help="zoom-out augmentation: half the samples are placed on a canvas up to R times the image's "
                        "size, which makes small objects (the SSD paper and upstream: 4; 1 turns it off)")
    g.add_argument("--min-crop-scale", type=float_range(0.05, 1, lo_open=False), default=0.3, metavar="S",
                   help="zoom-in augmentation: most samples are cropped to a patch whose sides are between S and 1 "
                        "times the (zoomed-out) image's, which makes objects larger (the SSD paper and upstream: "
                        "0.3; 0.05-1; 1 turns cropping off)")
    g.add_argument("--channel-swap", action=argparse.BooleanOptionalAction, default=True,
                   help="photometric augmentation: half the samples get their colour channels in a random order "
                        "(the SSD paper and upstream). --no-channel-swap keeps colours, for data where colour tells "
                        "classes apart (as in the demo set: one colour per class)")
    g.add_argument("--matcher", default="batched", choices=("batched", "per-sample"),
                   help="prior matching: batched on the training device, or per sample in the data "
                        "workers (upstream's MatchPrior)")
    g.add_argument("--hard-negative-mining", choices=MINING_RULES, default=DEFAULT_MINING,
                   help="how negatives enter the loss: per-image-min (3 per positive in each image, and at least 3x "
                        "the batch's mean positives per image, so images without objects count), batch (3 per "
                        "positive, the hardest of the whole batch) or per-image (upstream: images without objects "
                        "add no loss)")


def _add_network_args(g: argparse._ArgumentGroup) -> None:
    """--help group "network": which net and its initial weights."""
    g.add_argument("--net", default="mb2-ssd-lite", type=str.lower, choices=NET_NAMES, help="architecture")
    add_resolution_arg(g, 300, "input size in pixels (square); priors are rebuilt for it")
    add_width_mult_arg(g, 1.0, "width multiplier of mb2-ssd-lite")
    g.add_argument("--priors", default=None, metavar="FILE.json",
                   help="custom priors (dataset_report.py --suggest-priors writes one): per feature map min/max "
                        "size in pixels and aspect ratios; the heads follow its boxes per cell. The spec itself "
                        "is saved in args.json and every checkpoint (eval/export/--resume need no flag)")
    g.add_argument("--freeze-base-net", "--freeze_base_net", action="store_true", help="freeze the backbone")
    g.add_argument("--freeze-net", "--freeze_net", action="store_true",
                   help="freeze everything except the prediction heads")
    g.add_argument("--base-net", "--base_net", default=None, metavar="PTH", help="pretrained backbone weights")
    g.add_argument("--pretrained-ssd", "--pretrained_ssd", default=None, metavar="PTH",
                   help="pretrained SSD weights (another class count: all but the heads are loaded)")
    g.add_argument("--compile", action="store_true", help="torch.compile the net (falls back to eager "
                                                          "where unsupported)")
    g.add_argument("--memory-format", choices=MEMORY_FORMATS, default="auto",
                   help="memory layout of weights and images: channels_last is faster on a CPU (about 1.7x for "
                        "mb2-ssd-lite); auto picks channels_last on a CPU without --amp and contiguous otherwise "
                        "(--amp on a CPU with channels_last can make the loss NaN)")


def _add_checkpoint_args(g: argparse._ArgumentGroup) -> None:
    """--help group "checkpoints": where the run is saved and resumed from."""
    g.add_argument("--checkpoint-folder", "--model-dir", "--checkpoint_folder", default="models/",
                   metavar="DIR", help="where the run is written")
    g.add_argument("--resume", default=None, metavar="FOLDER_OR_PTH",
                   help="continue the run in FOLDER (from its newest checkpoint, or the given .pth in it); "
                        "its args.json supplies every argument not given here")
    g.add_argument("--force-override", action="store_true",
                   help="with --resume: allow changing arguments that are normally refused (net, lr, ...)")
    g.add_argument("--archive-old-run", action="store_true",
                   help="a new run into a folder that holds another run: first move that run's files into "
                        "FOLDER/archived-<its run id>/ (nothing is deleted); without it such a start is refused")
    g.add_argument("--keep-checkpoints", type=positive_int, default=None, metavar="N",
                   help="keep only the newest N epoch checkpoints (plus the best; None: keep all)")


def _add_optimizer_args(g: argparse._ArgumentGroup) -> None:
    """--help group "optimizer": the optimizer and its learning rates."""
    g.add_argument("--optimizer", "--optim-choose", "--optim", dest="optimizer", type=str.lower,
                   choices=OPTIMIZERS, default="adam", help="optimizer")
    g.add_argument("--lr", "--learning-rate", type=float_range(0, 10), default=1e-3,
                   help="learning rate (of the heads; see --base-net-lr, --extra-layers-lr)")
    g.add_argument("--base-net-lr", "--base_net_lr", type=float_range(0, 10), default=None,
                   help="backbone learning rate (None: --lr)")
    g.add_argument("--extra-layers-lr", "--extra_layers_lr", type=float_range(0, 10), default=None,
                   help="extra layers' learning rate (None: --lr)")
    g.add_argument("--momentum", type=unit_float, default=0.9, help="SGD momentum")
    g.add_argument("--dampening", type=unit_float, default=0.0, help="SGD dampening")
    g.add_argument("--nesterov", action="store_true", help="SGD: Nesterov momentum")
    g.add_argument("--weight-decay", "--weight_decay", type=float_range(0, 1, lo_open=False), default=0.0,
                   help="weight decay")
    g.add_argument("--betas", nargs=2, type=float_range(0, 1, lo_open=False, hi_open=True),
                   default=[0.9, 0.999], metavar=("B1", "B2"), help="Adam/AdamW betas")
    g.add_argument("--eps", type=float_range(0, 1), default=1e-8, help="Adam/AdamW epsilon")
    g.add_argument("--amsgrad", action="store_true", help="Adam/AdamW: AMSGrad variant")
    g.add_argument("--grad-clip", type=positive_float, default=None, metavar="NORM",
                   help="clip the gradient norm to NORM")
    g.add_argument("--ema", type=float_range(0, 1, lo_open=False, hi_open=True), default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights with this decay (e.g. 0.999; 0: off): "
                        "validation, best.pth and the model saved in each checkpoint use it")
    g.add_argument("--ema-warmup", type=int_range(0, 10**9), default=DEFAULT_WARMUP_STEPS, metavar="STEPS",
                   help="--ema warm-up: the decay is DECAY*(1-exp(-updates/STEPS)), so the average forgets "
                        "the start quickly (0: DECAY from the first step)")


def _add_schedule_args(g: argparse._ArgumentGroup) -> None:
    """--help group "learning rate schedule": how the learning rate changes over the epochs."""
    g.add_argument("--scheduler", type=str.lower, choices=SCHEDULERS, default="cosine",
                   help="learning rate schedule (updated every step)")
    g.add_argument("--milestones", type=_milestones, default=[80, 100], metavar="E1,E2",
                   help="multi-step: epochs at which the rate is multiplied by --gamma")
    g.add_argument("--gamma", type=float_range(0, 1), default=0.1, help="multi-step decay factor")
    g.add_argument("--t-max", "--t_max", type=float_range(0, 1e6), default=100.0,
                   help="cosine: epochs of one half period")
    g.add_argument("--warmup-epochs", type=float_range(0, 1e4, lo_open=False), default=0.0,
                   help="linear warm-up length in epochs (fractions allowed)")
    g.add_argument("--warmup-factor", type=float_range(0, 1), default=0.001,
                   help="learning rate factor at the start of the warm-up")


def _add_training_args(g: argparse._ArgumentGroup) -> None:
    """--help group "training": epochs, batches, validation, device and other runtime knobs."""
    g.add_argument("--batch-size", "--batch_size", type=int_range(1, 65536), default=4, help="images per step "
                                                                                              "(per process)")
    g.add_argument("--epochs", "--num-epochs", "--num_epochs", dest="num_epochs", type=int_range(1, 1_000_000),
                   default=30, help="total epochs of the run")
    g.add_argument("--workers", "--num-workers", "--num_workers", dest="num_workers", type=int_range(0, 512),
                   default=2, help="data loading processes (0: load in the main process)")
    g.add_argument("--validation-epochs", "--validation_epochs", type=positive_int, default=1,
                   help="validate (and save a checkpoint) every N epochs, and after the last")
    g.add_argument("--validation-mean-ap", "--validation_mean_ap", action="store_true",
                   help="also compute mAP when validating (COCO mAP@[.5:.95] and AP50; VOC mAP)")
    g.add_argument("--debug-steps", "--debug_steps", type=positive_int, default=10,
                   help="log running losses every N steps")
    add_device_args(g)
    g.add_argument("--amp", action="store_true",
                   help="mixed precision: fp16 + gradient scaling on CUDA, bf16 on CPU")
    g.add_argument("--seed", type=int_range(0, 2**32 - 1), default=None,
                   help="random seed (None: drawn once and saved in args.json, so --resume stays exact)")
    g.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs to FOLDER/tensorboard")
    g.add_argument("--profile", action="store_true",
                   help="profile a few training steps (torch.profiler): writes FOLDER/profile-trace.json (open in "
                        "chrome://tracing or Perfetto) and FOLDER/profile-summary.txt (the slowest operators)")
    g.add_argument("--viz-inputs", type=int_range(0, 100_000), default=0, metavar="N",
                   help="write the first N training samples (before and after augmentation, with the boxes and "
                        "their matched priors drawn) to FOLDER/inputs/ as PNGs")


_UNSET = object()
_PATH_ARGS = ("checkpoint_folder", "base_net", "pretrained_ssd", "validation_dataset")


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, Any], dict[str, Any],
                                                    dict[str, str]]:
    """``(args, given, defaults, flag_names)``: ``given`` holds only the flags on the command line
    (parsed a second time over a namespace pre-filled with a sentinel, which argparse leaves alone)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    defaults = vars(parser.parse_args([]))
    probe = parser.parse_args(argv, namespace=argparse.Namespace(**{k: _UNSET for k in defaults}))
    given = {k: v for k, v in vars(probe).items() if v is not _UNSET}
    flag_names = {}
    for action in parser._actions:  # the long flag to name in messages
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs:
            flag_names.setdefault(action.dest, longs[0])
    return args, given, defaults, flag_names


def resolve_paths(args: dict[str, Any]) -> dict[str, Any]:
    """Absolute paths, so args.json still works when the run is resumed from another folder."""
    args = dict(args)
    args["datasets"] = [os.path.abspath(os.path.expanduser(d)) for d in args["datasets"]]
    for k in _PATH_ARGS:
        if args.get(k):
            args[k] = os.path.abspath(os.path.expanduser(args[k]))
    return args


def pick_device(args: argparse.Namespace, info: distributed.DistInfo) -> torch.device:
    device = choose_device(args.device, args.use_cuda)
    if device.type == "cuda" and (info.enabled or device.index is None):
        device = torch.device("cuda", info.local_rank if info.enabled else 0)
    return device


def check_args(args: argparse.Namespace, resuming: bool) -> None:
    if args.nesterov and (args.optimizer != "sgd" or args.momentum <= 0 or args.dampening != 0):
        raise UserError("--nesterov needs --optimizer sgd with --momentum > 0 and --dampening 0")
    if args.base_net and args.pretrained_ssd:
        raise UserError("give either --base-net or --pretrained-ssd, not both")
    if resuming:  # the initial weights come from the checkpoint
        return
    for flag, path in (("--base-net", args.base_net), ("--pretrained-ssd", args.pretrained_ssd)):
        if path and not Path(path).is_file():
            raise UserError(f"{flag}: file not found: {path}")


# -------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    try:
        return train(argv)
    except UserError:  # refused after joining the process group: leave it, so gloo does not abort at exit
        distributed.shutdown()
        raise
    except RuntimeError as e:  # a peer that ended before training (its own refusal, a kill): one line, not gloo's
        if not (distributed.initialized() and distributed.is_peer_failure(e)):
            raise
        distributed.shutdown()
        raise Failure(f"another training process ended or stopped answering before training started "
                      f"({str(e).splitlines()[0][:160]}); see that process's output") from None


def train(argv: Sequence[str] | None) -> int:
    run = resolve_run(argv)
    data = build_data(run)
    parts = build_model_and_optimizer(run, data)
    start = restore(run, parts)
    trainer = build_trainer(run, data, parts)
    if run.info.is_main:
        write_run_description(run.folder, vars(run.args), data.class_names, run_id=run.run_id)
        if run.resumed is not None:  # a kill right after a save can leave best.pth / metrics.jsonl behind
            finish_saved_epoch(run.folder, run.resumed)
    if start.epoch >= run.args.num_epochs and start.validate_first is None:
        log.info("the run already has %d epochs (--epochs %d): nothing to do", start.epoch, run.args.num_epochs)
        distributed.leave_together()
        return 0
    fit(run, data, parts, trainer, start)
    return 0


@dataclass
class Run:
    """The resolved arguments and where this process trains and saves."""
    args: argparse.Namespace
    info: distributed.DistInfo
    device: torch.device
    folder: Path
    resumed: TrainingCheckpoint | None = None  # the checkpoint a --resume continues from
    saved_class_names: list[str] | None = None  # the resumed run's classes (args.json)
    run_id: str | None = None  # the run's identity (args.json, checkpoints, metrics); None: a run from before ids


@dataclass
class Data:
    cfg: SSDConfig
    train: Dataset
    val: Dataset
    class_names: list[str]
    collate: Callable
    per_sample: bool  # targets matched in the loader workers (--matcher per-sample)


@dataclass
class Parts:
    """The net and what updates it."""
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: StepLRSchedule
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    guard: NonFiniteGuard = field(default_factory=NonFiniteGuard)
    best: dict[str, Any] | None = None  # see update_best
    ema: WeightEMA | None = None  # --ema: the average of the weights (validated and saved as the model)


@dataclass
class Start:
    """Where training (re)starts: ``samples`` images of ``epoch``'s order already trained (all
    processes together; the next step is found from them, whatever the batch size or process count)."""
    epoch: int = 0
    samples: int = 0
    stats: EpochStats = field(default_factory=EpochStats)
    world_size: int = 1  # of the run that trained those samples
    validate_first: dict[str, Any] | None = None  # the record of the epoch before, saved but not validated


def resolve_run(argv: Sequence[str] | None) -> Run:
    """Parse the flags; for --resume, rebuild the run from its folder's args.json (+ allowed overrides)
    and find the checkpoint to continue from; pick the device; check the output folder."""
    args, given, defaults, flag_names = parse_args(argv)
    info = distributed.env_info()
    setup_logging(args.log_level if info.is_main else "warning")
    resumed, saved_class_names, run_id = None, None, None
    if args.resume:
        args, resumed, saved_class_names, run_id = resume_args(args, given, defaults, flag_names)
        setup_logging(args.log_level if info.is_main else "warning")
    args = argparse.Namespace(**resolve_paths(vars(args)))
    args.net = canonical_name(args.net)
    check_args(args, resuming=bool(args.resume))
    if "ema_warmup" in given and not args.ema:
        log.warning("--ema-warmup has no effect without --ema DECAY (no weight average is kept)")
    device = pick_device(args, info)
    distributed.init_process_group(info, device)
    if args.seed is None:  # drawn once, saved in args.json: a resumed run keeps its data order
        args.seed = distributed.broadcast_object(random.SystemRandom().randrange(2**31))
    folder = Path(args.checkpoint_folder)
    from vision.utils.paths import refuse_output_dir_over_inputs  # checkpoints, args.json, labels.txt not in a dataset
    refuse_output_dir_over_inputs("--checkpoint-folder", folder, [("--datasets", d) for d in args.datasets or []]
                                  + [("--validation-dataset", args.validation_dataset)])
    if not args.resume:
        run_id = distributed.broadcast_object(new_run_id())
    refused = None
    if info.is_main:
        try:
            check_folder_for_run(folder, args, run_id)
        except UserError as e:
            refused = str(e)
    refused = distributed.broadcast_object(refused)  # every process ends with the same line
    if refused:
        distributed.leave_together()
        raise UserError(refused)
    if resumed is not None and resumed.net not in (None, args.net):
        raise UserError(f"the checkpoint is of net {resumed.net}, but the run is {args.net}")
    return Run(args, info, device, folder, resumed, saved_class_names, run_id)


def check_folder_for_run(folder: Path, args: argparse.Namespace, run_id: str | None) -> None:
    """The checkpoint folder can take this run: writable (created only when the run description is
    written, so a failed start leaves none), and holding no other run (refused in one line naming
    it, or moved aside with --archive-old-run)."""
    check_writable_folder(folder)
    if folder.is_dir():
        remove_stale_temp_files_in(folder)
    other = existing_run(folder)
    if other is not None and (not args.resume or other.run_id != run_id):
        if not args.archive_old_run:
            raise UserError(f"{folder} already holds a training run, {other.describe()}: continue it with "
                            f"--resume {folder}, choose another --checkpoint-folder, or pass --archive-old-run "
                            f"to move it into {folder}/archived-.../ first")
        archive_run(folder, other)


def resume_args(args: argparse.Namespace, given: dict[str, Any], defaults: dict[str, Any],
                flag_names: dict[str, str]) -> tuple[argparse.Namespace, TrainingCheckpoint | None, list | None,
                                                     str | None]:
    """``(merged args, checkpoint to continue from or None, the run's class names, its run id)`` for
    --resume; only checkpoints of the folder's own run (args.json's run id) are continued."""
    resume_path = Path(args.resume).expanduser()
    folder = resume_path if resume_path.is_dir() else resume_path.parent
    if not resume_path.exists():
        raise UserError(f"--resume: not found: {resume_path}")
    saved = read_args_json(folder)
    run_id = saved.get("run_id") if isinstance(saved.get("run_id"), str) else None
    if "priors" in given:  # a file path vs the saved spec: compare what they describe
        given = {**given, "priors": resume_priors_arg(saved["args"].get("priors"), given["priors"],
                                                      args.force_override)}
    merged = merge_resume_args(saved["args"], given, defaults, flag_names, force=args.force_override)
    if "checkpoint_folder" not in given:
        merged["checkpoint_folder"] = str(folder)
    resumed = None
    if resume_path.is_file():
        resumed = TrainingCheckpoint.load(resume_path)
        check_run_id(resume_path, resumed, run_id)
        log.info("resuming from %s", resume_path)
    else:
        found = find_latest_valid_checkpoint(folder, run_id=run_id)
        if found is None:
            log.warning("no usable checkpoint in %s yet: starting that run from epoch 0 with its saved "
                        "arguments", folder)
        else:
            log.info("resuming from %s", found[0])
            resumed = TrainingCheckpoint.from_dict(found[1])
    return argparse.Namespace(**merged), resumed, saved.get("class_names"), run_id


def build_data(run: Run) -> Data:
    """The training datasets (concatenated; same classes required) and the validation dataset."""
    args = run.args
    seed_everything(args.seed)
    args.priors = priors_spec_arg(args.priors)  # the spec itself goes to args.json and the checkpoints
    fitted_for = (args.priors or {}).get("net")
    if fitted_for and str(fitted_for).lower() != args.net.lower() and run.resumed is None:
        log.warning("--priors: the file was fitted for %s at %s px, this run is %s at %d px: its box sizes are "
                    "scaled to %d px and laid on %s's feature maps; a file fitted for this net fits better "
                    "(dataset_report.py --net %s --resolution %d --suggest-priors FILE)", fitted_for,
                    args.priors.get("image_size"), args.net, args.resolution, args.resolution, args.net, args.net,
                    args.resolution)
    cfg = get_config(args.net, args.resolution, width_mult=args.mb2_width_mult, priors=args.priors)
    per_sample = args.matcher == "per-sample"
    target_transform = build_matcher(cfg) if per_sample else None
    train_transform = ReseededTransform(partial(TrainAugmentation, cfg.image_size, cfg.image_mean, cfg.image_std,
                                                max_expand=args.max_expand, min_crop_scale=args.min_crop_scale,
                                                channel_swap=args.channel_swap))
    test_transform = TestTransform(cfg.image_size, cfg.image_mean, cfg.image_std)
    train_parts = [open_dataset(args.dataset_type, d, split="train", transform=train_transform,
                                target_transform=target_transform, balance_data=args.balance_data,
                                keep_empty=args.keep_empty) for d in args.datasets]
    class_names = list(train_parts[0].class_names)
    for d, part in zip(args.datasets[1:], train_parts[1:]):
        if list(part.class_names) != class_names:
            raise UserError(f"dataset {d} has other classes than {args.datasets[0]}: "
                            f"{list(part.class_names)} vs {class_names}")
    if run.saved_class_names is not None and list(run.saved_class_names) != class_names:
        raise UserError(f"the datasets' classes {class_names} differ from the resumed run's "
                        f"{list(run.saved_class_names)}; a resumed run must keep its classes")
    train_dataset = train_parts[0] if len(train_parts) == 1 else ConcatDataset(train_parts)
    require_boxes(train_dataset, "training", ", ".join(args.datasets))
    val_dataset = open_dataset(args.dataset_type, args.validation_dataset or args.datasets[0], split="val",
                               transform=test_transform, target_transform=target_transform,
                               reference=train_parts[0])
    require_boxes(val_dataset, "validation", args.validation_dataset or args.datasets[0])
    if list(val_dataset.class_names) != class_names:
        raise UserError(f"the validation dataset's classes {list(val_dataset.class_names)} differ from the "
                        f"training classes {class_names}")
    if run.info.enabled:
        distributed.check_same_on_all_ranks(
            {"classes": class_names, "training images": len(train_dataset), "validation images": len(val_dataset),
             "training images and boxes": "+".join(part.content_digest() for part in train_parts),
             "validation images and boxes": val_dataset.content_digest()},
            "--datasets and --validation-dataset (the same folders, with the same contents)")
    log.info("training on %d images (%s), validating on %d, %d classes", len(train_dataset),
             ", ".join(args.datasets), len(val_dataset), len(class_names) - 1)
    collate = default_collate if per_sample else collate_padded
    if args.viz_inputs and run.info.is_main:
        written = write_input_samples(train_dataset, args.viz_inputs, run.folder / "inputs", cfg, class_names)
        log.info("--viz-inputs: wrote %d samples to %s", len(written), run.folder / "inputs")
    return Data(cfg, train_dataset, val_dataset, class_names, collate, per_sample)


def build_model_and_optimizer(run: Run, data: Data) -> Parts:
    """The net (initialised from --base-net / --pretrained-ssd unless resuming), optimizer, schedule, AMP."""
    args, device = run.args, run.device
    torch.manual_seed(args.seed)
    net = create_net(args.net, len(data.class_names), resolution=args.resolution, width_mult=args.mb2_width_mult,
                     priors=args.priors)
    if run.resumed is None:
        if args.base_net:
            log.info("initializing the backbone from %s", args.base_net)
            net.init_from_base_net(args.base_net)
        elif args.pretrained_ssd:
            init_from_pretrained_ssd(net, args.pretrained_ssd, args.net)
    net.to(device)
    channels_last = use_channels_last(args.memory_format, device, args.amp)
    if channels_last:
        net.to(memory_format=torch.channels_last)
        if args.amp and device.type == "cpu":
            log.warning("--memory-format channels_last with --amp on a CPU: bf16 training diverged to NaN in "
                        "this combination; use --memory-format auto if it does")
    groups = param_groups(net, args.lr, args.base_net_lr, args.extra_layers_lr,
                          freeze_base_net=args.freeze_base_net, freeze_net=args.freeze_net)
    optimizer = build_optimizer(args.optimizer, groups, lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay, betas=args.betas, eps=args.eps,
                                nesterov=args.nesterov, dampening=args.dampening, amsgrad=args.amsgrad)
    schedule = StepLRSchedule(optimizer, args.scheduler, t_max=args.t_max, milestones=args.milestones,
                              gamma=args.gamma, warmup_epochs=args.warmup_epochs, warmup_factor=args.warmup_factor)
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and device.type == "cuda")
    amp_dtype = (torch.float16 if device.type == "cuda" else torch.bfloat16) if args.amp else None
    log.info("net %s at %d px (%d %spriors), %s, lr %g (base net %g, extra layers %g), %s schedule, device %s%s%s",
             args.net, args.resolution, data.cfg.num_priors, "custom " if args.priors else "", args.optimizer, args.lr,
             args.base_net_lr or args.lr, args.extra_layers_lr or args.lr, args.scheduler, device,
             f", AMP {str(amp_dtype).replace('torch.', '')}" if amp_dtype else "",
             ", channels_last" if channels_last else "")
    ema = WeightEMA(net, args.ema, args.ema_warmup) if args.ema else None
    return Parts(net, optimizer, schedule, scaler, amp_dtype, ema=ema)


def restore(run: Run, parts: Parts) -> Start:
    """Load the resumed checkpoint's weights, optimizer, schedule, scaler, best metric and RNG
    states into ``parts``; where to start (the next epoch, or the step inside an interrupted one)."""
    ckpt = run.resumed
    if ckpt is None:
        return Start()
    described = ckpt.to_dict()
    restore_weights(parts.net, parts.ema, ckpt.model, ckpt.ema,
                    load=lambda module, state: load_net_weights(module, state, run.args.net, "the checkpoint",
                                                                checkpoint=described))
    try:
        parts.optimizer.load_state_dict(ckpt.optimizer or {})
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"the checkpoint's optimizer state does not fit this run ({e}); "
                        f"the frozen layers or optimizer changed") from None
    parts.schedule.load_state_dict(ckpt.scheduler or {})
    if ckpt.scaler and parts.scaler.is_enabled():
        parts.scaler.load_state_dict(ckpt.scaler)
    parts.best = ckpt.best_metric
    parts.guard.total = ckpt.nonfinite_steps
    if ckpt.interrupted:
        # files from before samples were counted: the steps were of this batch size
        samples = ckpt.samples_in_epoch_total or ckpt.step_in_epoch * run.args.batch_size * ckpt.world_size
        start = Start(ckpt.epoch, samples, EpochStats.from_state(ckpt.epoch_stats), ckpt.world_size)
    else:
        start = Start(ckpt.epoch + 1)
        if isinstance(ckpt.metrics, dict) and "val_loss" not in ckpt.metrics and validates(run.args, ckpt.epoch):
            start.validate_first = dict(ckpt.metrics)  # saved, then stopped during its validation
        log.info("continuing at epoch %d", start.epoch)
    restore_rng_state(ckpt.rng)
    return start


def build_trainer(run: Run, data: Data, parts: Parts) -> Trainer:
    """The training step: the net (DDP-wrapped / compiled as asked), matcher, loss, AMP, clipping."""
    model: torch.nn.Module = parts.net
    if run.info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            parts.net, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    if run.args.compile:
        model = compile_or_eager(model)
    matcher = None if data.per_sample else build_matcher(data.cfg, batched=True, device=run.device)
    if parts.ema is not None:
        log.info("EMA of weights: %s", parts.ema.describe())
    return Trainer(model=model, net=parts.net, criterion=build_criterion(data.cfg, run.device, mining=run.args.hard_negative_mining),
                   optimizer=parts.optimizer, schedule=parts.schedule, device=run.device, matcher=matcher,
                   scaler=parts.scaler, amp_dtype=parts.amp_dtype, grad_clip=run.args.grad_clip, guard=parts.guard,
                   ema=parts.ema)


def make_checkpoint(run: Run, data: Data, parts: Parts, epoch: int, step: int, stats: EpochStats,
                    record: dict | None = None, samples: int = 0) -> TrainingCheckpoint:
    """The state after ``step`` batches of ``epoch`` (0: the epoch is complete, ``record`` its metrics);
    ``samples``: the images of the epoch's order trained by all processes together."""
    world = run.info.world_size
    model, ema = checkpoint_weights(parts.net, parts.ema)
    return TrainingCheckpoint(
        epoch=epoch, step_in_epoch=step, samples_in_epoch=samples // world if step else 0,
        samples_in_epoch_total=samples if step else 0, epoch_stats=stats.state_dict() if step else None,
        model=model, ema=ema,
        optimizer=parts.optimizer.state_dict(), scheduler=parts.schedule.state_dict(),
        scaler=parts.scaler.state_dict(), rng=capture_rng_state(), best_metric=parts.best,
        nonfinite_steps=parts.guard.total, val_loss=record.get("val_loss") if record else None, metrics=record,
        args=vars(run.args), class_names=data.class_names, net=run.args.net, resolution=run.args.resolution,
        version=project_version(), world_size=run.info.world_size, run_id=run.run_id)


def fit(run: Run, data: Data, parts: Parts, trainer: Trainer, start: Start) -> None:
    """Train the epochs from ``start``; validate, save and record at the end of each (every
    --validation-epochs); a stop request saves the position inside the epoch and returns."""
    args, info = run.args, run.info
    per_rank = -(-len(data.train) // info.world_size)
    drop_last = per_rank > args.batch_size  # no trailing 1-image batch (BatchNorm needs 2+)
    steps_per_epoch = batches_per_epoch(len(data.train), args.batch_size, info.world_size, drop_last)
    writer = _tensorboard(run.folder, args) if info.is_main else None
    show_bars = info.is_main and sys.stderr.isatty() and logging.getLogger().level <= logging.INFO
    stop = StopRequest().install()
    profiler = _profiler(run, steps_per_epoch * (args.num_epochs - start.epoch))
    log.info("training epochs %d..%d, %d steps of %d images per epoch%s", start.epoch, args.num_epochs - 1,
             steps_per_epoch, args.batch_size * info.world_size,
             f" on {info.world_size} processes" if info.enabled else "")
    # workers start once (at the first epoch, after the stop handler is installed) and persist
    train_loader = EpochLoader(data.train, batch_size=args.batch_size, num_workers=args.num_workers,
                               seed=args.seed, collate_fn=data.collate, num_replicas=info.world_size, rank=info.rank,
                               drop_last=drop_last, pin_memory=run.device.type == "cuda")
    try:
        if start.validate_first is not None:
            log.info("epoch %d was saved but not validated (the run stopped during validation): validating it now",
                     start.epoch - 1)
            finish_epoch(run, data, parts, trainer, start.epoch - 1, EpochStats(), writer,
                         saved_record=start.validate_first)
        with logging_redirect_tqdm() if show_bars else nullcontext(), profiler or nullcontext():
            for epoch in tqdm(range(start.epoch, args.num_epochs), desc="epochs", unit="epoch",
                              initial=start.epoch, total=args.num_epochs, disable=not show_bars):
                done = start.samples if epoch == start.epoch else 0
                loader = train_loader.epoch(epoch, skip_samples=done)
                skip = max(0, steps_per_epoch - train_loader.batches_left()) if done else 0
                stats = start.stats if done else EpochStats()
                if done:
                    log.info("continuing at epoch %d, step %d/%d: %d of its %d images were trained before the "
                             "stop%s", epoch, skip, steps_per_epoch, done, len(data.train),
                             f" (by {start.world_size} processes, now {info.world_size})"
                             if start.world_size != info.world_size else "")
                with tqdm(total=steps_per_epoch, initial=skip, desc=f"epoch {epoch}", unit="batch", leave=False,
                          disable=not show_bars) as bar:
                    step = trainer.train_epoch(loader, epoch=epoch, start_step=skip,
                                               steps_per_epoch=steps_per_epoch, stats=stats, stop=stop,
                                               debug_steps=args.debug_steps, progress=bar if show_bars else None,
                                               world_size=info.world_size,
                                               after_step=profiler.step if profiler else None)
                stats.skipped_images += loader.skipped_images
                # every process takes the same branch: a signal to one of them stops them all
                stopping = distributed.any_rank(stop.requested, run.device)
                if step < steps_per_epoch or stopping:
                    samples = min(len(data.train), done + (step - skip) * args.batch_size * info.world_size)
                    if info.is_main:
                        path = make_checkpoint(run, data, parts, epoch, step, stats, samples=samples).save(
                            run.folder / checkpoint_name(args.net, epoch, step_in_epoch=step))
                        log.warning("stopped by %s at epoch %d, step %d/%d: saved %s; continue with --resume %s",
                                    stop.signal_name or ("a signal to another process" if info.enabled else "request"),
                                    epoch, step, steps_per_epoch, path, run.folder)
                    break
                finish_epoch(run, data, parts, trainer, epoch, stats, writer)
                if distributed.any_rank(stop.requested, run.device):
                    log.warning("stopped by %s after epoch %d; continue with --resume %s",
                                stop.signal_name or "a signal to another process", epoch, run.folder)
                    break
            else:
                log.info("training done: %d epochs; best %s", args.num_epochs, _describe_best(parts.best))
        distributed.leave_together()
    except RuntimeError as e:  # another process died: one line with the way on, not a gloo/NCCL traceback
        if not (info.enabled and distributed.is_peer_failure(e)):
            raise
        raise Failure(f"process {info.rank} of {info.world_size}: another training process ended or stopped "
                      f"answering ({str(e).splitlines()[0][:160]}); the checkpoints saved so far are intact: "
                      f"continue with --resume {run.folder} (same torchrun command)") from None
    finally:  # after an error, no collective call: torchrun stops the other processes
        stop.uninstall()
        if writer is not None:
            writer.close()


def validates(args: argparse.Namespace, epoch: int) -> bool:
    """Whether ``epoch`` is validated (and saved): every --validation-epochs, and the last."""
    return epoch % args.validation_epochs == 0 or epoch == args.num_epochs - 1


def finish_epoch(run: Run, data: Data, parts: Parts, trainer: Trainer, epoch: int, stats: EpochStats,
                 writer: Any, saved_record: dict[str, Any] | None = None) -> None:
    """After a complete epoch: validate (every --validation-epochs and after the last), save the
    checkpoint (best.pth, pruning), append the metrics record (and TensorBoard scalars).

    The epoch is saved (``...-Loss-nan.pth``, its training numbers) before validating, so a failure
    there (an unreadable file, a full disk, a crash) does not lose it. Validated, it is saved again
    under its validation loss and the first file removed. ``saved_record``: the epoch was saved so
    but never validated (the resumed checkpoint): validate it now, from its saved record."""
    args, info = run.args, run.info
    record = dict(saved_record) if saved_record is not None else epoch_record(run, parts, epoch, stats)
    if validates(args, epoch):
        provisional = run.folder / checkpoint_name(args.net, epoch) if saved_record is not None else None
        if info.is_main and saved_record is None:
            provisional = make_checkpoint(run, data, parts, epoch, 0, stats, record).save(
                run.folder / checkpoint_name(args.net, epoch))
        t0 = time.perf_counter()
        val_loader = build_loader(data.val, batch_size=args.batch_size, num_workers=args.num_workers,
                                  seed=args.seed, epoch=0, collate_fn=data.collate, shuffle=False,
                                  num_replicas=info.world_size, rank=info.rank, count_skips=True)
        record.update(trainer.validate(val_loader))
        if args.validation_mean_ap:
            record.update(mean_ap(trainer.eval_net, data.val, args, run.device, info))
        record["val_seconds"] = time.perf_counter() - t0
        log.info("Epoch: %d, Validation Loss: %.4f, Validation Regression Loss %.4f, Validation "
                 "Classification Loss: %.4f%s", epoch, record["val_loss"],
                 record["val_regression_loss"], record["val_classification_loss"],
                 describe_map(record))
        name = checkpoint_name(args.net, epoch, record["val_loss"])
        parts.best, is_best = update_best(parts.best, record, epoch, name)
        if info.is_main:
            path = make_checkpoint(run, data, parts, epoch, 0, stats, record).save(run.folder / name)
            if provisional is not None and provisional != path:
                provisional.unlink(missing_ok=True)
            if is_best:
                link_best(run.folder, path)
            best_file = [run.folder / parts.best["file"]] if parts.best else []
            prune_checkpoints(run.folder, args.keep_checkpoints, protect=[path] + best_file)
            log.info("saved %s%s", path, " (best so far)" if is_best else "")
    if info.is_main:
        append_metrics(run.folder, record)
        if writer is not None:
            for k, v in record.items():
                if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v):
                    writer.add_scalar(k, v, epoch)
            writer.flush()


def epoch_record(run: Run, parts: Parts, epoch: int, stats: EpochStats) -> dict[str, Any]:
    """The epoch's training numbers for metrics.jsonl (warning about skipped unreadable images)."""
    train_means = stats.means(run.device)
    record: dict[str, Any] = {
        "run_id": run.run_id, "epoch": epoch, "train_loss": train_means["loss"],
        "train_regression_loss": train_means["regression_loss"],
        "train_classification_loss": train_means["classification_loss"],
        "lr": parts.optimizer.param_groups[-1]["lr"],
        "images_per_s": stats.images / max(stats.seconds, 1e-9),
        "epoch_seconds": stats.seconds, "skipped_steps": stats.skipped_steps, "train_images": stats.images,
        "skipped_images": int(distributed.all_reduce_sum([stats.skipped_images], run.device)[0]),
    }
    if parts.ema is not None:  # the decay of the epoch's last update (the warm-up ramp moves it)
        record["ema_decay"] = parts.ema.current_decay
    if record["skipped_images"]:
        log.warning("epoch %d: %d unreadable images were skipped (each replaced by the next readable "
                    "one; the warnings above name them; validate_image_files.py finds them all)",
                    epoch, record["skipped_images"])
    return record


# ------------------------------------------------------------------------------------ helpers
def init_from_pretrained_ssd(net: torch.nn.Module, path: str, net_name: str) -> None:
    """All weights when the file has our class count; otherwise all but the heads (upstream's
    behaviour, for fine-tuning on other classes), saying which happened."""
    state_dict, checkpoint = load_state_dict_file(path)
    file_classes = infer_num_classes(state_dict)
    own = net.state_dict()
    heads_fit = all(k not in own or tuple(v.shape) == tuple(own[k].shape) for k, v in state_dict.items()
                    if k.startswith(("classification_headers.", "regression_headers.")))
    if file_classes == net.num_classes and not heads_fit:  # custom priors: other boxes per cell
        net.init_from_pretrained_ssd(path)
        log.warning("--pretrained-ssd: the heads of %s predict other boxes per cell than --priors asks: loaded all "
                    "but the prediction heads, which start from scratch", path)
    elif file_classes == net.num_classes:
        load_net_weights(net, state_dict, net_name, path, checkpoint=checkpoint)
        log.info("--pretrained-ssd: loaded every weight of %s, heads included (%d classes)", path, file_classes)
    else:
        net.init_from_pretrained_ssd(path)
        log.warning("--pretrained-ssd: %s has %s classes, the data %d: loaded all but the prediction heads, "
                    "which start from scratch", path, file_classes, net.num_classes)


def mean_ap(net: torch.nn.Module, dataset, args: argparse.Namespace, device: torch.device,
            info: distributed.DistInfo) -> dict[str, float]:
    """COCO mAP@[.5:.95] + AP50 (VOC mAP for VOC data) of the bare net, computed on rank 0."""
    out: dict[str, float] = {}
    if info.is_main:
        try:
            from vision.evaluation.evaluate import evaluate, metrics_record
        except ImportError as e:
            log.warning("--validation-mean-ap: evaluation code unavailable (%s); mAP skipped", e)
        else:
            m = evaluate(net, dataset, batch_size=args.batch_size, num_workers=args.num_workers, device=device)
            out = metrics_record(m)
    distributed.barrier()
    return distributed.broadcast_object(out)


def update_best(best: dict | None, record: dict, epoch: int, file: str) -> tuple[dict | None, bool]:
    """Best validation mAP (higher is better), or loss (lower) when mAP is off; ``file`` is the
    checkpoint about to be written for ``epoch`` (kept by --keep-checkpoints)."""
    name = "mAP" if "mAP" in record else "val_loss"
    value = record.get(name)
    if value is None or not math.isfinite(value):
        return best, False
    if best is None or best.get("name") != name or (
            value > best["value"] if name == "mAP" else value < best["value"]):
        return {"name": name, "value": float(value), "epoch": epoch, "file": file}, True
    return best, False


def _describe_best(best: dict | None) -> str:
    return "n/a" if not best else f"{best['name']} {best['value']:.4f} at epoch {best['epoch']}"


def _profiler(run: Run, steps_left: int) -> StepProfiler | None:
    """--profile (rank 0): five steps after five warm-up ones, fewer in a short run."""
    if not run.args.profile or not run.info.is_main or steps_left < 1:
        return None
    first = min(5, steps_left // 2)
    return StepProfiler(run.folder, first=first, steps=max(1, min(5, steps_left - first)),
                        cuda=run.device.type == "cuda")


def _tensorboard(folder: Path, args: argparse.Namespace):
    if not args.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise UserError(f"--tensorboard needs the tensorboard package ({e})") from None
    return SummaryWriter(log_dir=str(folder / "tensorboard"))


if __name__ == "__main__":
    rc = run_main(main)
    if distributed.joined():
        distributed.exit_process(rc)
    sys.exit(rc)
