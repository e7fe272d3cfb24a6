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
from pathlib import Path
from typing import Any, Sequence

# Compute threads that spin while they wait (libgomp's default) lose most of their time when
# they share the cores with data workers or other processes: 2-4x slower steps on a 2-core
# machine (bench/README.md, "Training"). Read once, when torch loads libgomp; the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.utils.data import ConcatDataset, default_collate
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from vision.cli.args import (add_dataset_type_arg, add_device_args, add_resolution_arg, add_width_mult_arg,
                             choose_device)
from vision.datasets.collation import collate_padded
from vision.ssd.data_preprocessing import TestTransform, TrainAugmentation
from vision.ssd.config.base import build_criterion, build_matcher
from vision.ssd.registry import NET_NAMES, canonical_name, create_net, get_config
from vision.training import distributed
from vision.training.compute import compile_or_eager, use_channels_last
from vision.training.data import (EpochLoader, ReseededTransform, batches_per_epoch, build_loader,
                                  seed_everything)
from vision.training.dataset_folders import open_dataset
from vision.training.loop import EpochStats, NonFiniteGuard, StopRequest, Trainer
from vision.training.optim import OPTIMIZERS, build_optimizer, param_groups
from vision.training.resume import merge_resume_args
from vision.training.run_folder import (append_metrics, ensure_writable_folder, finish_saved_epoch,
                                        project_version, read_args_json, write_run_description)
from vision.training.schedule import SCHEDULERS, StepLRSchedule
from vision.training.checkpoint import (capture_rng_state, checkpoint_name, find_latest_valid_checkpoint,
                                     link_best, list_checkpoints, load_checkpoint, prune_checkpoints,
                                     remove_stale_temp_files_in, restore_rng_state, save_checkpoint)
from vision.utils.misc import (UserError, add_log_level_arg, float_range, int_range, non_negative_float,
                               positive_float, positive_int, run_main, setup_logging,
                               str2bool, unit_float)
from vision.ssd.model_io import infer_num_classes, load_net_weights
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
    p = argparse.ArgumentParser(
        description="Train an SSD object detector (COCO, VOC or Open Images). The checkpoint folder "
                    "holds a complete run that --resume continues exactly.",
        epilog=EPILOG, formatter_class=_HelpFormatter)
    g = p.add_argument_group("data")
    add_dataset_type_arg(g)
    g.add_argument("--datasets", "--data", nargs="+", default=["coco-data"], metavar="DIR",
                   help="dataset folder(s); several are concatenated (same classes). COCO: DIR/annotations/"
                        "instances_train2017.json + DIR/train2017")
    g.add_argument("--validation-dataset", "--validation_dataset", default=None, metavar="DIR",
                   help="validation folder (None: the first dataset's validation split: COCO val2017, "
                        "VOC test list, Open Images test)")
    g.add_argument("--balance-data", "--balance_data", action="store_true",
                   help="Open Images: balance classes by down-sampling frequent ones")
    g.add_argument("--keep-empty", dest="keep_empty", action="store_true", default=True,
                   help="COCO: train on images without boxes too (pure background)")
    g.add_argument("--drop-empty", dest="keep_empty", action="store_false",
                   help="COCO: leave out images without boxes")
    g.add_argument("--matcher", default="batched", choices=("batched", "per-sample"),
                   help="prior matching: batched on the training device, or per sample in the data "
                        "workers (upstream's MatchPrior)")

    g = p.add_argument_group("network")
    g.add_argument("--net", default="mb2-ssd-lite", type=str.lower, choices=NET_NAMES, help="architecture")
    add_resolution_arg(g, 300, "input size in pixels (square); priors are rebuilt for it")
    add_width_mult_arg(g, 1.0, "width multiplier of mb2-ssd-lite")
    g.add_argument("--freeze-base-net", "--freeze_base_net", action="store_true", help="freeze the backbone")
    g.add_argument("--freeze-net", "--freeze_net", action="store_true",
                   help="freeze everything except the prediction heads")
    g.add_argument("--base-net", "--base_net", default=None, metavar="PTH", help="pretrained backbone weights")
    g.add_argument("--pretrained-ssd", "--pretrained_ssd", default=None, metavar="PTH",
                   help="pretrained SSD weights (another class count: all but the heads are loaded)")
    g.add_argument("--compile", action="store_true", help="torch.compile the net (falls back to eager "
                                                          "where unsupported)")
    g.add_argument("--memory-format", choices=MEMORY_FORMATS, default="auto",
                   help="layout of weights and activations: channels_last trains mb2-ssd-lite ~1.7x faster on a "
                        "CPU (oneDNN); auto = channels_last on a CPU without --amp, contiguous otherwise (on a CPU, "
                        "bf16 autocast with channels_last made training diverge to NaN)")

    g = p.add_argument_group("checkpoints")
    g.add_argument("--checkpoint-folder", "--model-dir", "--checkpoint_folder", default="models/",
                   metavar="DIR", help="where the run is written")
    g.add_argument("--resume", default=None, metavar="FOLDER_OR_PTH",
                   help="continue the run in FOLDER (from its newest checkpoint, or the given .pth in it); "
                        "its args.json supplies every argument not given here")
    g.add_argument("--force-override", action="store_true",
                   help="with --resume: allow changing arguments that are normally refused (net, lr, ...); "
                        "without: allow starting a new run in a folder that holds one")
    g.add_argument("--keep-checkpoints", type=positive_int, default=None, metavar="N",
                   help="keep only the newest N epoch checkpoints (plus the best; None: keep all)")

    g = p.add_argument_group("optimizer")
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

    g = p.add_argument_group("learning rate schedule")
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

    g = p.add_argument_group("training")
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
    add_log_level_arg(p)
    return p


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
    args, given, defaults, flag_names = parse_args(argv)
    info = distributed.env_info()
    setup_logging(args.log_level if info.is_main else "warning")

    # ---- a resumed run is rebuilt from its folder's args.json (+ allowed overrides)
    resume_ckpt: dict[str, Any] | None = None
    saved_class_names: list[str] | None = None
    if args.resume:
        resume_path = Path(args.resume).expanduser()
        folder = resume_path if resume_path.is_dir() else resume_path.parent
        if not resume_path.exists():
            raise UserError(f"--resume: not found: {resume_path}")
        saved = read_args_json(folder)
        merged = merge_resume_args(saved["args"], given, defaults, flag_names, force=args.force_override)
        if "checkpoint_folder" not in given:
            merged["checkpoint_folder"] = str(folder)
        args = argparse.Namespace(**merged)
        setup_logging(args.log_level if info.is_main else "warning")
        saved_class_names = saved.get("class_names")
        if resume_path.is_file():
            resume_ckpt = load_checkpoint(resume_path)
            log.info("resuming from %s", resume_path)
        else:
            found = find_latest_valid_checkpoint(folder)
            if found is None:
                log.warning("no usable checkpoint in %s yet: starting that run from epoch 0 with its saved "
                            "arguments", folder)
            else:
                log.info("resuming from %s", found[0])
                resume_ckpt = found[1]
    args = argparse.Namespace(**resolve_paths(vars(args)))
    args.net = canonical_name(args.net)
    check_args(args, resuming=bool(args.resume))

    device = pick_device(args, info)
    distributed.init_process_group(info, device)
    if args.seed is None:  # drawn once, saved in args.json: a resumed run keeps its data order
        args.seed = distributed.broadcast_object(random.SystemRandom().randrange(2**31))
    folder = Path(args.checkpoint_folder)
    if info.is_main:
        ensure_writable_folder(folder)
        remove_stale_temp_files_in(folder)
        if not args.resume and list_checkpoints(folder) and not args.force_override:
            raise UserError(f"{folder} already holds a training run's checkpoints: continue it with --resume "
                            f"{folder}, choose another --checkpoint-folder, or pass --force-override")
    if resume_ckpt is not None and resume_ckpt.get("net") not in (None, args.net):
        raise UserError(f"the checkpoint is of net {resume_ckpt.get('net')}, but the run is {args.net}")

    # ---- data
    seed_everything(args.seed)
    cfg = get_config(args.net, args.resolution, width_mult=args.mb2_width_mult)
    per_sample = args.matcher == "per-sample"
    target_transform = build_matcher(cfg) if per_sample else None
    collate = default_collate if per_sample else collate_padded
    train_transform = ReseededTransform(partial(TrainAugmentation, cfg.image_size, cfg.image_mean, cfg.image_std))
    test_transform = TestTransform(cfg.image_size, cfg.image_mean, cfg.image_std)
    train_parts = [open_dataset(args.dataset_type, d, split="train", transform=train_transform,
                                target_transform=target_transform, balance_data=args.balance_data,
                                keep_empty=args.keep_empty) for d in args.datasets]
    class_names = list(train_parts[0].class_names)
    for d, part in zip(args.datasets[1:], train_parts[1:]):
        if list(part.class_names) != class_names:
            raise UserError(f"dataset {d} has other classes than {args.datasets[0]}: "
                            f"{list(part.class_names)} vs {class_names}")
    if saved_class_names is not None and list(saved_class_names) != class_names:
        raise UserError(f"the datasets' classes {class_names} differ from the resumed run's "
                        f"{list(saved_class_names)}; a resumed run must keep its classes")
    train_dataset = train_parts[0] if len(train_parts) == 1 else ConcatDataset(train_parts)
    val_dataset = open_dataset(args.dataset_type, args.validation_dataset or args.datasets[0], split="val",
                               transform=test_transform, target_transform=target_transform)
    if list(val_dataset.class_names) != class_names:
        raise UserError(f"the validation dataset's classes {list(val_dataset.class_names)} differ from the "
                        f"training classes {class_names}")
    log.info("training on %d images (%s), validating on %d, %d classes", len(train_dataset),
             ", ".join(args.datasets), len(val_dataset), len(class_names) - 1)

    # ---- net, loss, optimizer, schedule
    torch.manual_seed(args.seed)
    net = create_net(args.net, len(class_names), resolution=args.resolution, width_mult=args.mb2_width_mult)
    if resume_ckpt is None:
        if args.base_net:
            log.info("initializing the backbone from %s", args.base_net)
            net.init_from_base_net(args.base_net)
        elif args.pretrained_ssd:
            init_from_pretrained_ssd(net, args.pretrained_ssd, args.net)
    net.to(device)
    if use_channels_last(args.memory_format, device, args.amp):
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
    use_scaler = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    amp_dtype = (torch.float16 if device.type == "cuda" else torch.bfloat16) if args.amp else None
    log.info("net %s at %d px (%d priors), %s, lr %g (base net %g, extra layers %g), %s schedule, device %s%s%s",
             args.net, args.resolution, cfg.num_priors, args.optimizer, args.lr,
             args.base_net_lr or args.lr, args.extra_layers_lr or args.lr, args.scheduler, device,
             f", AMP {str(amp_dtype).replace('torch.', '')}" if amp_dtype else "",
             ", channels_last" if use_channels_last(args.memory_format, device, args.amp) else "")

    # ---- restore the run's state
    start_epoch, start_step, start_stats = 0, 0, EpochStats()
    best: dict[str, Any] | None = None
    nonfinite = NonFiniteGuard()
    if resume_ckpt is not None:
        load_net_weights(net, resume_ckpt["model"], args.net, "the checkpoint", checkpoint=resume_ckpt)
        try:
            optimizer.load_state_dict(resume_ckpt["optimizer"])
        except (ValueError, KeyError) as e:
            raise UserError(f"the checkpoint's optimizer state does not fit this run ({e}); "
                            f"the frozen layers or optimizer changed") from None
        schedule.load_state_dict(resume_ckpt.get("scheduler") or {})
        if resume_ckpt.get("scaler") and use_scaler:
            scaler.load_state_dict(resume_ckpt["scaler"])
        best = resume_ckpt.get("best_metric")
        nonfinite.total = int(resume_ckpt.get("nonfinite_steps", 0))
        if resume_ckpt.get("step_in_epoch"):
            start_epoch = int(resume_ckpt["epoch"])
            samples = int(resume_ckpt.get("samples_in_epoch", 0))
            start_step = samples // args.batch_size if samples else int(resume_ckpt["step_in_epoch"])
            start_stats = EpochStats.from_state(resume_ckpt.get("epoch_stats"))
        else:
            start_epoch = int(resume_ckpt["epoch"]) + 1
        restore_rng_state(resume_ckpt.get("rng"))
        log.info("continuing at epoch %d%s", start_epoch, f", step {start_step}" if start_step else "")

    model: torch.nn.Module = net
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        model = compile_or_eager(model)
    matcher = None if per_sample else build_matcher(cfg, batched=True, device=device)
    criterion = build_criterion(cfg, device)
    trainer = Trainer(model=model, net=net, criterion=criterion, optimizer=optimizer, schedule=schedule,
                      device=device, matcher=matcher, scaler=scaler, amp_dtype=amp_dtype,
                      grad_clip=args.grad_clip, guard=nonfinite)

    run_args = vars(args)
    if info.is_main:
        write_run_description(folder, run_args, class_names)
        if resume_ckpt is not None:  # a kill right after a save can leave best.pth / metrics.jsonl behind
            finish_saved_epoch(folder, resume_ckpt)
    if start_epoch >= args.num_epochs:
        log.info("the run already has %d epochs (--epochs %d): nothing to do", start_epoch, args.num_epochs)
        distributed.shutdown()
        return 0

    per_rank = -(-len(train_dataset) // info.world_size)
    drop_last = per_rank > args.batch_size  # no trailing 1-image batch (BatchNorm needs 2+)
    steps_per_epoch = batches_per_epoch(len(train_dataset), args.batch_size, info.world_size, drop_last)
    writer = _tensorboard(folder, args) if info.is_main else None
    show_bars = info.is_main and sys.stderr.isatty() and logging.getLogger().level <= logging.INFO
    stop = StopRequest().install()

    def checkpoint_state(epoch: int, step: int, stats: EpochStats, val_loss: float | None,
                         record: dict | None) -> dict[str, Any]:
        return {
            "epoch": epoch, "step_in_epoch": step,
            "samples_in_epoch": step * args.batch_size if step else 0,
            "epoch_stats": stats.state_dict() if step else None,
            "model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict(), "rng": capture_rng_state(), "best_metric": best,
            "nonfinite_steps": nonfinite.total, "val_loss": val_loss, "metrics": record,
            "args": run_args, "class_names": class_names, "net": args.net, "resolution": args.resolution,
            "version": project_version(), "world_size": info.world_size,
        }

    log.info("training epochs %d..%d, %d steps of %d images per epoch%s", start_epoch, args.num_epochs - 1,
             steps_per_epoch, args.batch_size * info.world_size,
             f" on {info.world_size} processes" if info.enabled else "")
    # workers start once (at the first epoch, after the stop handler is installed) and persist
    train_loader = EpochLoader(train_dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                               seed=args.seed, collate_fn=collate, num_replicas=info.world_size, rank=info.rank,
                               drop_last=drop_last, pin_memory=device.type == "cuda")
    try:
        with logging_redirect_tqdm() if show_bars else nullcontext():  # log lines print above the bars
            for epoch in tqdm(range(start_epoch, args.num_epochs), desc="epochs", unit="epoch",
                              initial=start_epoch, total=args.num_epochs, disable=not show_bars):
                skip = start_step if epoch == start_epoch else 0
                stats = start_stats if skip else EpochStats()
                loader = train_loader.epoch(epoch, skip)
                with tqdm(total=steps_per_epoch, initial=skip, desc=f"epoch {epoch}", unit="batch", leave=False,
                          disable=not show_bars) as bar:
                    step = trainer.train_epoch(loader, epoch=epoch, start_step=skip,
                                               steps_per_epoch=steps_per_epoch, stats=stats, stop=stop,
                                               debug_steps=args.debug_steps, progress=bar if show_bars else None,
                                               world_size=info.world_size)
                stats.skipped_images += loader.skipped_images
                if step < steps_per_epoch or stop.requested:  # save the position inside the epoch, exit 0
                    if info.is_main:
                        path = save_checkpoint(folder / checkpoint_name(args.net, epoch, step_in_epoch=step),
                                               checkpoint_state(epoch, step, stats, None, None))
                        log.warning("stopped by %s at epoch %d, step %d/%d: saved %s; continue with --resume %s",
                                    stop.signal_name or "request", epoch, step, steps_per_epoch, path, folder)
                    break

                # ---- epoch done: validate, save, record
                train_means = stats.means(device)
                record: dict[str, Any] = {
                    "epoch": epoch, "train_loss": train_means["loss"],
                    "train_regression_loss": train_means["regression_loss"],
                    "train_classification_loss": train_means["classification_loss"],
                    "lr": optimizer.param_groups[-1]["lr"],
                    "images_per_s": stats.images / max(stats.seconds, 1e-9),
                    "epoch_seconds": stats.seconds, "skipped_steps": stats.skipped_steps,
                    "skipped_images": int(distributed.all_reduce_sum([stats.skipped_images], device)[0]),
                }
                if record["skipped_images"]:
                    log.warning("epoch %d: %d unreadable images were skipped (each replaced by the next readable "
                                "one; the warnings above name them; validate_image_files.py finds them all)",
                                epoch, record["skipped_images"])
                if epoch % args.validation_epochs == 0 or epoch == args.num_epochs - 1:
                    t0 = time.perf_counter()
                    val_loader = build_loader(val_dataset, batch_size=args.batch_size,
                                              num_workers=args.num_workers, seed=args.seed, epoch=0,
                                              collate_fn=collate, shuffle=False, num_replicas=info.world_size,
                                              rank=info.rank)
                    record.update(trainer.validate(val_loader))
                    if args.validation_mean_ap:
                        record.update(mean_ap(net, val_dataset, args, device, info))
                    record["val_seconds"] = time.perf_counter() - t0
                    log.info("Epoch: %d, Validation Loss: %.4f, Validation Regression Loss %.4f, Validation "
                             "Classification Loss: %.4f%s", epoch, record["val_loss"],
                             record["val_regression_loss"], record["val_classification_loss"],
                             f", mAP {record['mAP']:.4f}, AP50 {record['AP50']:.4f}" if "mAP" in record else "")
                    name = checkpoint_name(args.net, epoch, record["val_loss"])
                    best, is_best = update_best(best, record, epoch, name)
                    if info.is_main:
                        path = save_checkpoint(folder / name, checkpoint_state(epoch, 0, stats, record["val_loss"],
                                                                               record))
                        if is_best:
                            link_best(folder, path)
                        prune_checkpoints(folder, args.keep_checkpoints,
                                          protect=[path] + ([folder / best["file"]] if best else []))
                        log.info("saved %s%s", path, " (best so far)" if is_best else "")
                if info.is_main:
                    append_metrics(folder, record)
                    if writer is not None:
                        for k, v in record.items():
                            if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v):
                                writer.add_scalar(k, v, epoch)
                        writer.flush()
                if stop.requested:
                    log.warning("stopped by %s after epoch %d; continue with --resume %s", stop.signal_name,
                                epoch, folder)
                    break
            else:
                log.info("training done: %d epochs; best %s", args.num_epochs, _describe_best(best))
        distributed.barrier()
        distributed.shutdown()
    finally:  # after an error, no collective call: torchrun stops the other processes
        stop.uninstall()
        if writer is not None:
            writer.close()
    return 0


# ------------------------------------------------------------------------------------ helpers
def init_from_pretrained_ssd(net: torch.nn.Module, path: str, net_name: str) -> None:
    """All weights when the file has our class count; otherwise all but the heads (upstream's
    behaviour, for fine-tuning on other classes), saying which happened."""
    state_dict, checkpoint = load_state_dict_file(path)
    file_classes = infer_num_classes(state_dict)
    if file_classes == net.num_classes:
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
            from vision.evaluation import evaluate
        except ImportError as e:
            log.warning("--validation-mean-ap: evaluation code unavailable (%s); mAP skipped", e)
        else:
            m = evaluate(net, dataset, batch_size=args.batch_size, num_workers=args.num_workers, device=device)
            out = {"mAP": float(m["mAP"]), "AP50": float(m["AP50"])}
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


def _tensorboard(folder: Path, args: argparse.Namespace):
    if not args.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise UserError(f"--tensorboard needs the tensorboard package ({e})") from None
    return SummaryWriter(log_dir=str(folder / "tensorboard"))


if __name__ == "__main__":
    sys.exit(run_main(main))
