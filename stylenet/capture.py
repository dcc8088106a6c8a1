"""Frames from a camera or a video file through OpenCV, and the thread that keeps only the newest.

A live source gets a capture thread (`LatestFrame`) that holds only the newest frame: when
inference is slower than the camera, frames are dropped, never queued, so the picture never
lags. A video file opened here gets the same checks as `videofile.stylize_video`: its frame
size against the images' pixel limit from the header before any frame is decoded, its frame
rate for sense.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from .opencv import cv2
from .videofile import DEFAULT_FPS, VideoError, check_frame_size, check_header, usable_fps


class CameraError(VideoError):
    """No camera at that index, or it delivers no frames."""


def parse_source(source) -> int | Path:
    """A camera index (0, "1") or a video file path."""
    if isinstance(source, bool):
        raise VideoError(f"bad source {source!r}: pass a camera index (source=0) or a video file")
    if isinstance(source, int) and source < 0:  # OpenCV crashes (SIGSEGV) on a negative index
        raise VideoError(f"bad source {source}: a camera index is 0 or more (source=0), or pass a video file")
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return int(source)
    return Path(source)


def open_capture(source) -> cv2.VideoCapture:
    """Open a camera index or a video file, with an error that says what to do instead."""
    src = parse_source(source)
    if isinstance(src, int):
        cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"no camera at index {src} (OpenCV could not open it); connect a camera, try another "
                "index with source=N, or stylize a file with source=VIDEO_FILE"
            )
        return cap
    if not src.is_file():
        raise VideoError(f"video not found: {src}")
    check_header(src)  # PyAV reads the size without decoding; OpenCV's open decodes a first frame of some codecs
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"cannot read video {src}: OpenCV has no decoder for it or it is not a video")
    try:  # what OpenCV reads, for files PyAV could not size
        if (size := capture_size(cap)) is not None:
            check_frame_size(*size, src)
    except VideoError:
        cap.release()
        raise
    return cap


def capture_fps(cap: cv2.VideoCapture) -> float:
    """The source's frame rate if it is plausible (`videofile.usable_fps`), else 30."""
    return float(usable_fps(cap.get(cv2.CAP_PROP_FPS)) or DEFAULT_FPS)


def capture_size(cap) -> tuple[int, int] | None:
    """(w, h) the capture says its frames have, None if it does not say."""
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    except (TypeError, ValueError, OverflowError, cv2.error):
        return None
    return (w, h) if w > 0 and h > 0 else None


class LatestFrame:
    """A capture thread holding only the newest frame: slow consumers skip frames, never lag.

    pace_fps plays a video file at its frame rate, so it behaves like a camera. drop=False
    makes the thread wait for the consumer instead (every frame of a file, still read ahead).
    """

    def __init__(self, cap, pace_fps: float | None = None, drop: bool = True):
        self._cap, self._pace, self._drop = cap, pace_fps, drop
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._ended = False
        self._stop = threading.Event()
        self.captured = self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="stylenet-capture", daemon=True)

    def start(self) -> LatestFrame:
        self._thread.start()
        return self

    def _run(self) -> None:
        due = time.perf_counter()
        try:
            while not self._stop.is_set():
                ok, frame = self._cap.read()
                if not ok:
                    break
                if self._pace:
                    due += 1.0 / self._pace
                    time.sleep(max(0.0, due - time.perf_counter()))
                with self._cond:
                    if not self._drop:
                        self._cond.wait_for(lambda: self._frame is None or self._stop.is_set())
                    if self._frame is not None:
                        self.dropped += 1
                    self._frame = frame
                    self.captured += 1
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def get(self, timeout: float | None = None) -> np.ndarray | None:
        """The newest frame not yet taken; None once the source has ended. TimeoutError if none came."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frame is not None or self._ended, timeout):
                raise TimeoutError
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
