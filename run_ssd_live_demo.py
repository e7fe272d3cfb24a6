#!/usr/bin/env python3
"""Detect objects in a camera stream or a video file (upstream's run_ssd_live_demo.py form).

Usage:
  python3 run_ssd_live_demo.py NET MODEL LABELS [VIDEO]     # VIDEO: a file or a camera index (default 0)
  python3 run_ssd_live_demo.py models/fruit/ssd-mobilenet.onnx street.mp4    # the .onnx names its net and labels
  python3 run_ssd_live_demo.py mb1-ssd models/fruit/ssd-mobilenet.onnx models/fruit/labels.txt street.mp4 \\
      --postprocess detectnet

The same code as run_ssd_example.py on a video input: each frame is detected and drawn, the annotated
video is written to --output-dir (same frame count and frame rate; no window: OpenCV here is the
headless build), an fps summary is logged at the end; Ctrl-C stops a camera and keeps what was recorded.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from vision.utils.misc import ArgumentParser, add_log_level_arg, int_range, run_main, unit_float


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description="Run an SSD on a camera or a video file and write the annotated video.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("items", metavar="NET MODEL LABELS [VIDEO]", nargs="+",
                   help="network name (e.g. mb1-ssd), model (.pth, checkpoint folder or .onnx), labels file "
                        "(BACKGROUND first), then a video file or camera index (default 0, the first camera); "
                        "an .onnx from onnx_export.py needs neither NET nor LABELS: MODEL.onnx [VIDEO]")
    p.add_argument("--postprocess", choices=["nms", "detectnet"], default="nms",
                   help="nms (default) or detectnet (what jetson-inference's detectNet shows)")
    p.add_argument("--threshold", type=unit_float, default=None,
                   help="minimum score (default 0.4; 0.5 with --postprocess detectnet)")
    p.add_argument("--output-dir", default=None, help="folder for the annotated video (default run_ssd_example_output/)")
    p.add_argument("--max-frames", type=int_range(1, 10**9), default=None, help="stop after this many frames")
    p.add_argument("--per-frame", action="store_true", help="print the detections of every frame")
    add_log_level_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import run_ssd_example

    from vision.utils.video import is_video_source

    args = build_parser().parse_args(argv)
    items = list(args.items)
    if len(items) < 2 or not is_video_source(items[-1]):
        items.append("0")
    forward = [*items, "--postprocess", args.postprocess,
               "--log-level", args.log_level]
    for flag, value in (("--threshold", args.threshold), ("--output-dir", args.output_dir),
                        ("--max-frames", args.max_frames)):
        if value is not None:
            forward += [flag, str(value)]
    if args.per_frame:
        forward.append("--per-frame")
    return run_ssd_example.main(forward)


if __name__ == "__main__":
    sys.exit(run_main(main))
