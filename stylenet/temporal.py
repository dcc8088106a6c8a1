"""Temporal consistency of stylized video: optical flow, the warping error, a stabiliser.

The flow is OpenCV's DIS (dense inverse search, Kroeger et al. 2016): no model weights, a few
milliseconds per 640×480 frame. It is always computed on the *input* frames, where motion is
real; stylized frames are then compared or blended along it.

- `warping_error` is Lai et al. 2018's metric: the previous stylized frame warped onto the
  current one with the input's flow, mean squared difference over the pixels where forward
  and backward flow agree (occlusions and disocclusions excluded), averaged over the clip.
  On the input frames themselves it is the floor: what flow and interpolation leave.
- `Stabilizer` blends each new stylized frame with the flow-warped previous *output* where
  the warp is reliable (the warped previous input matches the current input), so strokes
  stay put on still and smoothly moving regions and are repainted where things appear.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .opencv import cv2

#: DIS presets by name (ultrafast is real time on a laptop CPU; medium is the metric's default)
PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def gray(frame: np.ndarray) -> np.ndarray:
    """8-bit grey from a BGR uint8 or float [0,1] frame (what DIS takes)."""
    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame


class Flow:
    """DIS optical flow with a reusable instance (its buffers are kept between calls)."""

    def __init__(self, preset: str = "medium"):
        if preset not in PRESETS:
            raise ValueError(f"unknown flow preset {preset!r}; use one of {', '.join(PRESETS)}")
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])

    def __call__(self, gray_from: np.ndarray, gray_to: np.ndarray) -> np.ndarray:
        """(H,W,2) flow f with gray_from(x) ≈ gray_to(x + f(x))."""
        return self._dis.calc(gray_from, gray_to, None)


def _grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return xs + flow[..., 0], ys + flow[..., 1]


def _remap(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _inside(maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    map_x, map_y = maps
    h, w = map_x.shape
    return (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image(x + flow(x)): bring a frame onto the grid the flow starts from (bilinear, border replicated)."""
    return _remap(image, _grid(flow))


def inside(flow: np.ndarray) -> np.ndarray:
    """Pixels whose flow target lies inside the frame."""
    return _inside(_grid(flow))


def consistent(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Non-occluded pixels of the current frame (Sundaram et al. 2010's forward-backward check).

    `backward` maps current → previous, `forward` previous → current; where both describe the
    same motion, following one and then the other returns to the start.
    """
    maps = _grid(backward)
    forward_there = _remap(forward, maps)
    round_trip = backward + forward_there
    bound = 0.01 * ((backward ** 2).sum(-1) + (forward_there ** 2).sum(-1)) + 0.5
    return ((round_trip ** 2).sum(-1) <= bound) & _inside(maps)


def frame_warping_error(prev_out: np.ndarray, cur_out: np.ndarray, backward: np.ndarray, mask: np.ndarray) -> float:
    """Masked mean squared difference between cur_out and prev_out warped along `backward` ([0,1] pixels)."""
    if not mask.any():
        return 0.0
    diff = warp(_unit(prev_out), backward) - _unit(cur_out)
    per_pixel = (diff ** 2).mean(-1) if diff.ndim == 3 else diff ** 2
    return float(per_pixel[mask].mean())


def _unit(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32) / 255.0 if frame.dtype == np.uint8 else frame.astype(np.float32)


class FlowCache:
    """The input clip's flows and masks, computed once and reused for every method compared."""

    def __init__(self, inputs: list[np.ndarray], preset: str = "medium"):
        flow = Flow(preset)
        grays = [gray(f) for f in inputs]
        self.pairs = []
        for prev, cur in zip(grays, grays[1:]):
            backward, forward = flow(cur, prev), flow(prev, cur)
            self.pairs.append((backward, consistent(backward, forward)))

    def __len__(self) -> int:
        return len(self.pairs) + 1


def warping_error(outputs: Iterable[np.ndarray], flows: FlowCache) -> float:
    """Lai et al.'s E_warp of a stylized clip: the mean over consecutive frames of the masked
    squared difference between each frame and its predecessor warped with the input's flow."""
    outputs = list(outputs)
    if len(outputs) != len(flows):
        raise ValueError(f"{len(outputs)} output frames for a clip of {len(flows)}")
    if len(outputs) < 2:
        raise ValueError("the warping error needs at least two frames")
    errors = [frame_warping_error(outputs[t], outputs[t + 1], backward, mask)
              for t, (backward, mask) in enumerate(flows.pairs)]
    return float(np.mean(errors))


class Stabilizer:
    """Stylized frames made temporally stable at inference, for any network.

    out_t = s_t + blend · r · (warp(out_{t-1}) − s_t), where s_t is the network's frame and r
    in [0,1] the reliability of the warp: exp(−(photometric error / sigma)²) between the
    current input and the warped previous input, zero outside the frame. The recursion
    carries strokes along the motion; moving or newly visible content is painted fresh.
    """

    def __init__(self, blend: float = 0.8, sigma: float = 12.0, preset: str = "ultrafast"):
        if not 0.0 <= blend < 1.0:
            raise ValueError(f"stabilize blend must be in [0, 1), got {blend}")
        if sigma <= 0:
            raise ValueError(f"stabilize sigma must be positive, got {sigma}")
        self.blend, self.sigma = float(blend), float(sigma)
        self._flow = Flow(preset)
        self._prev_gray: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None

    @classmethod
    def from_config(cls, cfg) -> Stabilizer:
        """From a `stabilizer:` block of the tools' YAML (blend, sigma, preset)."""
        return cls(float(cfg["blend"]), float(cfg["sigma"]), str(cfg["preset"]))

    def reset(self) -> None:
        """Forget the previous frame (a cut, a new clip, a style switch)."""
        self._prev_gray = self._prev_out = None

    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        """The stabilised version of `stylized` (same shape and dtype); `frame` is its input."""
        cur_gray = gray(frame)
        out = stylized.astype(np.float32)
        if self._prev_gray is not None and self._prev_gray.shape == cur_gray.shape and self._prev_out.shape == out.shape:
            maps = _grid(self._flow(cur_gray, self._prev_gray))  # one sampling grid for both warps and the mask
            error = _remap(self._prev_gray, maps).astype(np.float32) - cur_gray.astype(np.float32)
            reliability = np.exp(-((error / self.sigma) ** 2)) * _inside(maps)
            weight = (self.blend * reliability)[..., None] if out.ndim == 3 else self.blend * reliability
            out = out + weight * (_remap(self._prev_out, maps) - out)
        self._prev_gray, self._prev_out = cur_gray, out
        if stylized.dtype == np.uint8:
            return np.clip(out + 0.5, 0, 255).astype(np.uint8)
        return out.astype(stylized.dtype)
