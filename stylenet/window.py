"""The live window (OpenCV): whether one can open here, the keys it takes and the text it shows.

Before a window opens, `display_problem` checks there is a display to open it on:
opencv-python's Qt aborts the whole process (SIGABRT, no Python exception) where there is none.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .opencv import cv2
from .videofile import VideoError

RUN_HEADLESS = "run without a window: headless=true output=OUT.mp4 (a file) or headless=true virtual_cam=true (a virtual camera)"
KEYS_HELP = "keys: n/p or 1-9 style, b blend with the next style (multi-style files), o side-by-side, c keep colours, s snapshot, q/Esc quit"


class NoGUIError(VideoError):
    """No window possible: OpenCV built without a window system (opencv-python-headless), or no display."""


# -- is there a display -------------------------------------------------------------------------
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


# -- keys ---------------------------------------------------------------------------------------
@dataclass
class LiveState:
    """What the keys change while the window is open (`blend`: an index into the blends, -1: none)."""

    index: int = 0
    blend: int = -1
    side_by_side: bool = False
    preserve_color: bool = False
    snapshot: bool = False
    quit: bool = False


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


# -- what the window shows ----------------------------------------------------------------------
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
