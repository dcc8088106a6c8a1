"""Live capture: stylize a camera feed (or a video played like one) in real time.

OpenCV does the capture (VideoCapture) and the window; files are written by
`videofile.FrameWriter` (PyAV: H.264, exact sizes), a virtual camera by `virtualcam.py`. A
live source gets a capture thread that keeps only the newest frame: when inference is slower
than the camera, frames are dropped, never queued, so the picture never lags. Whole video
files are `videofile.stylize_video`. Before a window opens, `display_problem` checks there is
a display to open it on: opencv-python's Qt aborts the whole process where there is none.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError
from .opencv import cv2
from .videofile import FrameWriter, VideoStats, stylize_video  # noqa: F401  (files: videofile.py)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")
DEFAULT_FPS = 30.0


class VideoError(UserError, ValueError):
    """A video file cannot be read or written."""


class CameraError(VideoError):
    """No camera at that index, or it delivers no frames."""


class NoGUIError(VideoError):
    """No window possible: OpenCV built without a window system (opencv-python-headless), or no display."""


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


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
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"cannot read video {src}: OpenCV has no decoder for it or it is not a video")
    return cap


def capture_fps(cap: cv2.VideoCapture) -> float:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS


# -- live ---------------------------------------------------------------------------------------
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


@dataclass
class LiveState:
    """What the keys change while the window is open (`blend`: an index into the blends, -1: none)."""

    index: int = 0
    blend: int = -1
    side_by_side: bool = False
    preserve_color: bool = False
    snapshot: bool = False
    quit: bool = False


KEYS_HELP = "keys: n/p or 1-9 style, b blend with the next style (multi-style files), o side-by-side, c keep colours, s snapshot, q/Esc quit"


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


def handle_key(key: int, state: LiveState, n_styles: int, n_blends: int = 0) -> LiveState:
    """Apply one cv2.waitKey code to the state (-1/255: no key). `n_blends`: how many blends
    key b cycles through for the current style (0: b does nothing) before the pure style again."""
    key &= 0xFF
    char = chr(key).lower() if 32 <= key < 127 else ""
    if key == 27 or char == "q":
        state.quit = True
    elif char == "n" or key == 83:  # n or →
        state.index, state.blend = (state.index + 1) % n_styles, -1
    elif char == "p" or key == 81:  # p or ←
        state.index, state.blend = (state.index - 1) % n_styles, -1
    elif char.isdigit() and 1 <= int(char) <= n_styles:
        state.index, state.blend = int(char) - 1, -1
    elif char == "b" and n_blends:
        state.blend = state.blend + 1 if state.blend + 1 < n_blends else -1
    elif char == "o":
        state.side_by_side = not state.side_by_side
    elif char == "c":
        state.preserve_color = not state.preserve_color
    elif char == "s":
        state.snapshot = True
    return state


def compose_view(frame: np.ndarray, stylized: np.ndarray, side_by_side: bool) -> np.ndarray:
    return np.concatenate([frame, stylized], axis=1) if side_by_side else stylized


def draw_overlay(image: np.ndarray, text: str) -> np.ndarray:
    """Text in the top-left corner, dark outline under light fill: readable on any picture."""
    scale = max(0.4, image.shape[0] / 720)
    org = (int(10 * scale), int(28 * scale))
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(2, int(4 * scale)), cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(1.5 * scale)), cv2.LINE_AA)
    return image


class FpsMeter:
    """Frames per second, smoothed over the last `window` frames (for the overlay)."""

    def __init__(self, window: int = 30):
        self.times: list[float] = []
        self.window = window

    def tick(self) -> float:
        self.times = (self.times + [time.perf_counter()])[-self.window - 1:]
        return self.fps

    @property
    def fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(1e-9, self.times[-1] - self.times[0])


RUN_HEADLESS = "run without a window: headless=true output=OUT.mp4 (a file) or headless=true virtual_cam=true (a virtual camera)"


def _qt_needs_x11() -> bool:
    """opencv-python's window is Qt with only the X11 (xcb) platform plugin: no Wayland of its own."""
    platforms = Path(cv2.__file__).parent / "qt" / "plugins" / "platforms"
    return platforms.is_dir() and not any("wayland" in p.name for p in platforms.iterdir())


def _x_unreachable(display: str, timeout: float = 2.0) -> str | None:
    """Why the X server of `display` (`[host]:N[.S]`) takes no connection, or None if it does
    (or the name is one this check does not know: then Qt decides)."""
    m = re.fullmatch(r"(?P<host>[^:]*):(?P<num>\d+)(\.\d+)?", display)
    if not m:
        return None
    host, num = m["host"], int(m["num"])
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{num}"
        for address in ("\0" + path, path):  # Linux's abstract socket first, then the file
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                try:
                    sock.connect(address)
                    return None
                except OSError as exc:
                    reason = f"{path}: {exc.strerror or exc}"
        return reason
    try:
        socket.create_connection((host, 6000 + num), timeout=timeout).close()
        return None
    except OSError as exc:
        return f"{host}:{6000 + num}: {exc.strerror or exc}"


def display_problem(env=None, platform: str | None = None) -> str | None:
    """Why no window can open here, or None. Windows and macOS always have one; elsewhere
    OpenCV's window needs an X display (DISPLAY; opencv-python's Qt has no Wayland plugin)
    unless QT_QPA_PLATFORM picks another Qt platform. Checked before the first window call,
    because Qt aborts the process (SIGABRT, no Python exception) when it finds no display."""
    env, platform = os.environ if env is None else env, platform or sys.platform
    if platform.startswith(("win", "darwin", "cygwin")) or env.get("QT_QPA_PLATFORM"):
        return None
    display = env.get("DISPLAY", "")
    if not display:
        if env.get("WAYLAND_DISPLAY"):
            return None if not _qt_needs_x11() else (
                "OpenCV's window needs X11 (DISPLAY), and this Wayland session sets no DISPLAY (XWayland off)")
        return "no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    if reason := _x_unreachable(display):
        return f"cannot connect to the X display DISPLAY={display} ({reason})"
    return None


def check_display() -> None:
    """A NoGUIError (one line: the problem, the headless way) where no window can open."""
    if problem := display_problem():
        raise NoGUIError(f"{problem}; {RUN_HEADLESS}")


def open_window(name: str) -> None:
    check_display()
    try:
        cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # the picture only: no Qt toolbar
    except cv2.error as exc:
        if "not implemented" in str(exc).lower():
            raise NoGUIError("this OpenCV has no window support (opencv-python-headless): "
                             "pip uninstall -y opencv-python-headless && pip install --force-reinstall --no-deps opencv-python "
                             "(the two share the cv2 folder); "
                             f"or {RUN_HEADLESS}") from None
        raise NoGUIError(f"cannot open a window: {' '.join(str(exc).split())}; or {RUN_HEADLESS}") from None


def capture_size(cap) -> tuple[int, int] | None:
    """(w, h) the capture says its frames have, None if it does not say."""
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    except (TypeError, ValueError, OverflowError, cv2.error):
        return None
    return (w, h) if w > 0 and h > 0 else None


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
    choices = live_styles(stylizers)
    src = parse_source(source)
    cap = open_capture(src)
    fps_src = capture_fps(cap)
    camera = isinstance(src, int)
    grabber = LatestFrame(cap, pace_fps=fps_src if realtime and not camera else None, drop=realtime or camera)
    state = LiveState(side_by_side=side_by_side, preserve_color=preserve_color)
    meter, writer, frames, snapshots = FpsMeter(), None, 0, []
    start, completed, shown_style, window_open, vcam = None, False, None, False, None

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

    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
    return save_image(Image.fromarray(np.ascontiguousarray(view_bgr[..., ::-1])), Path(folder) / f"{name}_{stamp}.png")
