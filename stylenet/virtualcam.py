"""The stylized feed as a virtual camera, for Zoom, Meet, OBS or any program that reads a camera.

`pyvirtualcam` (the `virtualcam` extra: `pip install -e ".[virtualcam]"`) sends frames to
whichever backend the system has: OBS Virtual Camera (Windows, macOS), Unity Capture
(Windows) or a v4l2loopback device (Linux). The webcam's `virtual_cam=true` opens one at the
camera's frame size and rate (`video.run_live`); without pyvirtualcam, or without a backend,
it is a one-line error naming what to install on this OS.
"""

from __future__ import annotations

import sys

import numpy as np

from .errors import UserError

#: how to get a virtual camera device, per `sys.platform` prefix
BACKEND_HINTS = {
    "linux": "install and load v4l2loopback: sudo apt install v4l2loopback-dkms && "
             "sudo modprobe v4l2loopback devices=1 exclusive_caps=1",
    "win32": "install OBS Studio 26 or newer and start its virtual camera once (Start Virtual Camera), "
             "or install Unity Capture",
    "darwin": "install OBS Studio 26 or newer and start its virtual camera once (Start Virtual Camera)",
}
INSTALL = 'pip install pyvirtualcam (or pip install -e ".[virtualcam]")'


class VirtualCameraError(UserError):
    """No pyvirtualcam, or no virtual camera device for it to send to."""


def backend_hint(platform: str = sys.platform) -> str:
    for prefix, hint in BACKEND_HINTS.items():
        if platform.startswith(prefix):
            return hint
    return "pyvirtualcam supports Windows (OBS, Unity Capture), macOS (OBS) and Linux (v4l2loopback)"


def require():
    """The pyvirtualcam module, or a VirtualCameraError saying how to install it."""
    try:
        import pyvirtualcam
    except ImportError:
        raise VirtualCameraError(f"virtual_cam=true needs pyvirtualcam: {INSTALL}") from None
    return pyvirtualcam


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit (w, h), aspect kept, centred on black (side-by-side views)."""
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    from .opencv import cv2

    scale = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class VirtualCamera:
    """A pyvirtualcam camera of a fixed size fed BGR frames (converted to its RGB format).

    Frames of another size (the side-by-side view) are fitted into it; the loop that sends
    them sets the pace, so `sleep_until_next_frame` is not used.
    """

    def __init__(self, width: int, height: int, fps: float):
        pyvirtualcam = require()
        self.size = (int(width), int(height))
        try:
            self._camera = pyvirtualcam.Camera(width=self.size[0], height=self.size[1], fps=float(fps),
                                               fmt=pyvirtualcam.PixelFormat.RGB)
        except RuntimeError as exc:
            reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
            raise VirtualCameraError(f"no virtual camera to send to (pyvirtualcam: {reason}); "
                                     f"{backend_hint()}; or run without virtual_cam=true") from None
        self.fps = float(fps)
        self.frames = 0

    @property
    def device(self) -> str:
        return str(getattr(self._camera, "device", "") or "virtual camera")

    @property
    def backend(self) -> str:
        return str(getattr(self._camera, "backend", "") or "")

    def send(self, frame_bgr: np.ndarray) -> None:
        self._camera.send(np.ascontiguousarray(fit(frame_bgr, self.size)[..., ::-1]))
        self.frames += 1

    def close(self) -> None:
        self._camera.close()

    def __enter__(self) -> VirtualCamera:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
