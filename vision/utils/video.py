"""Video in and out for the preview scripts: files and cameras through OpenCV, annotated copies out.

Why here: run_ssd_example.py and run_ssd_live_demo.py share it. A source is a video file (known
extension) or an integer camera index; the output keeps the input's frame count and frame rate
(cameras that report no rate are written at 30 fps) and is written under a temporary name and
renamed when complete, so an interrupted run never leaves a half-written file under the real name.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vision.utils.misc import UserError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
FOURCC_BY_SUFFIX = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v"}
DEFAULT_CAMERA_FPS = 30.0


def is_camera(item: str) -> bool:
    return str(item).strip().isdigit()


def is_video_source(item: str) -> bool:
    """A camera index ("0") or a path with a video extension."""
    return is_camera(item) or Path(str(item)).suffix.lower() in VIDEO_EXTENSIONS


def video_output_name(item: str) -> str:
    """File name of the annotated copy: same stem and container when OpenCV can write it, else .mp4."""
    if is_camera(item):
        return f"camera{int(item)}.mp4"
    p = Path(item)
    return p.stem + (p.suffix.lower() if p.suffix.lower() in FOURCC_BY_SUFFIX else ".mp4")


def open_capture(item: str):
    """A cv2.VideoCapture for a camera index or a file; UserError when it cannot be opened."""
    import cv2

    try:  # OpenCV's own warnings (e.g. FFMPEG probing a missing camera) would bypass logging
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass
    if is_camera(item):
        cap = cv2.VideoCapture(int(item))
        what = f"camera {int(item)}"
    else:
        if not Path(item).is_file():
            raise UserError(f"video not found: {item}")
        cap = cv2.VideoCapture(str(item))
        what = f"video {item}"
    if not cap.isOpened():
        cap.release()
        raise UserError(f"cannot open {what} (not a readable video, or no such camera)")
    return cap


@dataclass
class VideoResult:
    frames: int
    seconds: float  # wall time of reading, detecting, drawing and writing
    fps_in: float
    output: Path | None
    interrupted: bool = False  # stopped by Ctrl-C: the caller should stop too

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def process_video(item: str, output: Path | None, frame_fn: Callable[[np.ndarray, int], np.ndarray],
                  max_frames: int | None = None) -> VideoResult:
    """Run ``frame_fn(rgb_frame, index) -> annotated BGR frame`` on every frame of ``item``.

    Writes the annotated frames to ``output`` (None: nothing written) at the source's frame rate.
    Stops at the end of the file, at ``max_frames``, or on Ctrl-C (the frames so far are kept).
    """
    import cv2

    cap = open_capture(item)
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if not (fps_in > 0 and np.isfinite(fps_in)):
        fps_in = DEFAULT_CAMERA_FPS
    writer = None
    tmp = None
    frames = 0
    interrupted = False
    start = time.perf_counter()
    try:
        while max_frames is None or frames < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            annotated = frame_fn(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), frames)
            if output is not None:
                if writer is None:
                    output.parent.mkdir(parents=True, exist_ok=True)
                    tmp = output.with_name(f".{output.stem}.partial{output.suffix}")
                    fourcc = cv2.VideoWriter_fourcc(*FOURCC_BY_SUFFIX.get(output.suffix.lower(), "mp4v"))
                    h, w = annotated.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), fourcc, fps_in, (w, h))
                    if not writer.isOpened():
                        raise UserError(f"cannot write video {output} (OpenCV has no encoder for it)")
                writer.write(annotated)
            frames += 1
    except KeyboardInterrupt:
        log.info("interrupted: keeping the %d frames so far", frames)
        interrupted = True
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    seconds = time.perf_counter() - start
    if tmp is not None and output is not None:
        os.replace(tmp, output)
    if frames == 0:
        raise UserError(f"no frame could be read from {'camera ' + item if is_camera(item) else item}")
    return VideoResult(frames, seconds, float(fps_in), output if writer is not None else None, interrupted)
