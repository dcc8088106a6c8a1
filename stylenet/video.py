"""Live style transfer: a camera feed (or a video played like one) stylized in real time.

The loop (`run_live`) takes frames from `capture.py` (OpenCV, a thread keeping only the newest
frame), shows them in `window.py`'s window with its keys and overlay, writes files through
`videofile.FrameWriter` (PyAV: H.264, exact sizes) and a virtual camera through `virtualcam.py`.
Whole video files are `videofile.stylize_video`. The dependencies point one way: this module
imports those, none of them imports it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

import numpy as np

from .capture import CameraError, LatestFrame, capture_fps, capture_size, open_capture, parse_source
from .opencv import cv2
from .videofile import FrameWriter, VideoError, check_frame_size
from .window import KEYS_HELP, FpsMeter, LiveState, compose_view, draw_overlay, handle_key, open_window


@dataclass
class LiveStyle:
    """One style the keys select: a stylizer and which of its styles (None: its only one)."""

    stylizer: object
    style: str | None
    label: str

    @property
    def styles(self) -> list[str]:
        return list(getattr(self.stylizer, "styles", None) or [self.label])

    def blend(self, amount: float) -> dict[str, float] | None:
        """This style mixed with the next style of the same file (`amount` of it); None for a
        single-style file (nothing to blend with)."""
        names = self.styles
        if self.style is None or len(names) < 2:
            return None
        nxt = names[(names.index(self.style) + 1) % len(names)]
        return {self.style: 1.0 - amount, nxt: amount}


def live_styles(stylizers: Sequence) -> list[LiveStyle]:
    """Every style of every model, in order: a multi-style file gives one entry per style, so
    the number keys pick a style of a file as they pick one of several files."""
    out = []
    for stylizer in stylizers:
        names = list(getattr(stylizer, "styles", None) or [])
        if len(names) > 1:
            out += [LiveStyle(stylizer, name, name) for name in names]
        else:
            out.append(LiveStyle(stylizer, None, getattr(stylizer, "name", "style")))
    return out


@dataclass
class LiveStats:
    frames: int
    seconds: float
    dropped: int
    output: Path | None = None
    snapshots: list[Path] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def frame_limit(max_frames) -> int:
    """`max_frames` checked: a count of frames, 0 for all (until the source ends or q is pressed).
    A negative count used to mean "stop before the first frame": exit 0 with nothing written."""
    if isinstance(max_frames, bool) or not isinstance(max_frames, Integral) or max_frames < 0:
        raise VideoError(f"max_frames={max_frames!r}: the number of frames to stylize, 0 for all (until the source ends "
                         "or q is pressed)")
    return int(max_frames)


def same_size(frame: np.ndarray, size: tuple[int, int] | None, src) -> np.ndarray:
    """`frame` at `size` (w, h: the first frame's; None for the first frame itself). A source
    whose frames change size mid-stream is scaled back to the first size (the writer, the
    stabiliser and the virtual camera keep one size); a first frame above the pixel limit is
    refused (`videofile.check_frame_size`)."""
    if size is None:
        check_frame_size(frame.shape[1], frame.shape[0], src)
        return frame
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def run_live(stylizers: Sequence, source=0, *, headless: bool = False, output: str | os.PathLike | None = None,
             max_frames: int = 0, strength: float = 1.0, preserve_color: bool = False, side_by_side: bool = False,
             overlay: bool = True, snapshot_dir: str | os.PathLike = "snapshots", window: str = "stylenet",
             realtime: bool = True, first_frame_timeout: float = 10.0, stabilizer=None,
             blends: Sequence[float] = (), virtual_cam: bool = False, encoder_preset: str = "veryfast",
             log: Callable[[str], None] = print) -> LiveStats:
    """The webcam loop: capture thread → stylize the newest frame → window (or file when headless)
    and/or a virtual camera (`virtual_cam`: what the window shows, without the overlay text).

    A video file source plays like a camera (at its frame rate, late frames dropped) unless
    realtime=False: then every frame is shown, as fast as inference allows. `stabilizer`
    (`temporal.Stabilizer`) blends each output with the flow-warped previous one (no flicker);
    it starts afresh when the style changes. A multi-style file's styles are keys of their own
    (`live_styles`); key b steps the current one through `blends` (the share of the file's next
    style), then back to the pure style. A key acts on the next frame stylized after it; the
    FPS shown and `LiveStats.fps` are measured end to end: frames shown (or written, or sent)
    over the wall time from the first frame to the last.
    """
    if not stylizers:
        raise ValueError("no styles given")
    max_frames = frame_limit(max_frames)
    choices = live_styles(stylizers)
    src = parse_source(source)
    cap = open_capture(src)
    fps_src = capture_fps(cap)
    camera = isinstance(src, int)
    grabber = LatestFrame(cap, pace_fps=fps_src if realtime and not camera else None, drop=realtime or camera)
    state = LiveState(side_by_side=side_by_side, preserve_color=preserve_color)
    meter, writer, frames, snapshots = FpsMeter(), None, 0, []
    start, completed, shown_style, window_open, vcam, first_size = None, False, None, False, None, None

    def open_virtual_camera(size: tuple[int, int]):
        from .virtualcam import VirtualCamera

        cam = VirtualCamera(*size, fps_src)
        log(f"virtual camera: {cam.device}{f' ({cam.backend})' if cam.backend else ''}, "
            f"{size[0]}x{size[1]} at {fps_src:g} fps")
        return cam

    try:
        if virtual_cam and (size := capture_size(cap)):
            vcam = open_virtual_camera(size)  # before the window: a missing backend is an error, not a flash
        if not headless:
            open_window(window)
            window_open = True
            log(KEYS_HELP)
        grabber.start()
        timeout = first_frame_timeout
        while not max_frames or frames < max_frames:
            try:
                frame = grabber.get(timeout)
            except TimeoutError:
                raise CameraError(f"{'camera ' + str(src) if camera else src} delivered no frame within {timeout:g} s") from None
            if frame is None:
                break
            frame = same_size(frame, first_size, src)
            first_size = first_size or (frame.shape[1], frame.shape[0])
            start = start or time.perf_counter()
            choice = choices[state.index]
            mix = choice.blend(blends[state.blend]) if 0 <= state.blend < len(blends) else None
            chosen = {"style": mix or choice.style} if (mix or choice.style) is not None else {}
            label = choice.stylizer.label(mix) if mix else choice.label
            stylized = choice.stylizer.stylize(frame, bgr=True, strength=strength, preserve_color=state.preserve_color, **chosen)
            if stabilizer is not None:
                if (state.index, state.blend, state.preserve_color) != shown_style:
                    stabilizer.reset()
                    shown_style = (state.index, state.blend, state.preserve_color)
                stylized = stabilizer(frame, stylized)
            view = compose_view(frame, stylized, state.side_by_side)
            if virtual_cam:
                vcam = vcam or open_virtual_camera((frame.shape[1], frame.shape[0]))
                vcam.send(view)
            meter.tick()
            if overlay:
                draw_overlay(view, f"{label}  {meter.fps:.1f} FPS")
            frames += 1
            if headless:
                if output is not None:
                    writer = writer or FrameWriter(output, fps_src, (view.shape[1], view.shape[0]), preset=encoder_preset)
                    writer.write(view)
            else:
                cv2.imshow(window, view)
                handle_key(cv2.waitKey(1), state, len(choices), len(blends) if choice.blend(0.5) else 0)
                if state.snapshot:
                    snapshots.append(save_snapshot(view, snapshot_dir, label))
                    log(f"snapshot: {snapshots[-1]}")
                    state.snapshot = False
                if state.quit:
                    break
        completed = True
    except KeyboardInterrupt:
        completed = True
    finally:
        seconds = time.perf_counter() - start if start else 0.0
        grabber.stop()
        cap.release()
        written = writer.close(commit=completed) if writer else None
        if vcam is not None:
            vcam.close()
        if window_open:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
    return LiveStats(frames, seconds, grabber.dropped, written, snapshots)


def save_snapshot(view_bgr: np.ndarray, folder: str | os.PathLike, name: str) -> Path:
    from PIL import Image

    from .imageio import save_image
    from .outputs import inside, safe_name

    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
    out = inside(folder, Path(folder) / f"{safe_name(name)}_{stamp}.png")  # `name`: the style's, from the model file
    return save_image(Image.fromarray(np.ascontiguousarray(view_bgr[..., ::-1])), out)
