"""Test clips with known motion for the flicker benchmark, made from still photos.

Each clip is a virtual camera moving over a photo (`pan`, `zoom`, `rotate`: small, smooth
motions, the kind that make per-frame stylization shimmer) with a textured disc gliding
across it (a moving object, so the occlusion mask has work to do). Frames are BGR uint8.
`python scripts/benchmark.py mode=video ... save_clips=DIR` writes them as videos to look at.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

MOTIONS = ("pan", "zoom", "rotate")


def camera(motion: str, t: float) -> tuple[float, float, float, float]:
    """(dx, dy, scale, degrees) of the virtual camera at time t ∈ [0, 1] (relative to the frame size)."""
    if motion == "pan":
        return 0.12 * t, 0.04 * t, 1.0, 0.0
    if motion == "zoom":
        return 0.0, 0.0, 1.0 + 0.15 * t, 0.0
    if motion == "rotate":
        return 0.0, 0.0, 1.0, 4.0 * t
    raise ValueError(f"unknown motion {motion!r}; use one of {', '.join(MOTIONS)}")


def make_clip(photo_bgr: np.ndarray, motion: str, frames: int = 24, size: tuple[int, int] = (320, 240),
              moving_object: bool = True) -> list[np.ndarray]:
    """`frames` frames of `size` (w, h): the camera's view of the photo plus a gliding disc."""
    w, h = size
    ph, pw = photo_bgr.shape[:2]
    base = 1.35 * max(w / pw, h / ph)  # room for the motion inside the photo
    photo = cv2.resize(photo_bgr, (math.ceil(pw * base), math.ceil(ph * base)), interpolation=cv2.INTER_AREA)
    ph, pw = photo.shape[:2]
    disc_r = max(6, h // 8)
    disc = cv2.resize(photo_bgr[: ph // 3, : pw // 3], (2 * disc_r, 2 * disc_r), interpolation=cv2.INTER_AREA)[:, ::-1]
    disc_mask = np.zeros((2 * disc_r, 2 * disc_r), np.uint8)
    cv2.circle(disc_mask, (disc_r, disc_r), disc_r - 1, 255, -1, cv2.LINE_AA)
    out = []
    for i in range(frames):
        t = i / max(1, frames - 1)
        dx, dy, scale, angle = camera(motion, t)
        centre = (pw / 2 + dx * w, ph / 2 + dy * h)
        m = cv2.getRotationMatrix2D(centre, angle, scale)  # photo → camera: rotate and zoom about the centre
        m[:, 2] += (w / 2 - centre[0], h / 2 - centre[1])
        frame = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if moving_object:
            cx, cy = int(disc_r + t * (w - 2 * disc_r)), int(h * 0.6 + 0.15 * h * math.sin(2 * math.pi * t))
            _paste(frame, disc, disc_mask, cx - disc_r, cy - disc_r)
        out.append(frame)
    return out


def _paste(frame: np.ndarray, patch: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + patch.shape[1]), min(h, y + patch.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    p, a = patch[y0 - y: y1 - y, x0 - x: x1 - x], mask[y0 - y: y1 - y, x0 - x: x1 - x, None] / 255.0
    frame[y0:y1, x0:x1] = (a * p + (1 - a) * frame[y0:y1, x0:x1]).astype(np.uint8)


def photo_clips(photos: list[Path], motions=MOTIONS, frames: int = 24, size: tuple[int, int] = (320, 240)) -> dict[str, list[np.ndarray]]:
    """{"<photo>-<motion>": frames} for every photo and motion."""
    from stylenet.imageio import load_image

    clips = {}
    for path in photos:
        bgr = np.ascontiguousarray(np.asarray(load_image(path).convert("RGB"))[..., ::-1])
        for motion in motions:
            clips[f"{path.stem}-{motion}"] = make_clip(bgr, motion, frames, size)
    return clips
