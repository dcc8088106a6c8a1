#!/usr/bin/env python
"""Live style transfer: `python scripts/webcam.py model=PATH[,PATH...] [source=0|VIDEO_FILE]`.

A window shows the stylized feed with an FPS overlay. Keys: n/p (or arrows) and 1-9 switch
style, o toggles side-by-side with the original, c keeps the camera's colours, s saves a
snapshot, q or Esc quits. Capture runs in its own thread; frames are dropped, never queued,
when inference is slower than the camera.

headless=true output=OUT.mp4 max_frames=N writes the feed to a file instead of a window and
prints the measured FPS last. No camera, or no GUI: one-line error, exit code 2.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # a missing camera is our error message, not OpenCV's warning

from stylenet.cli import UsageError, parse_overrides  # noqa: E402

DEFAULTS = {
    "model": None,            # one or several styles: a,b,c or [a,b,c]; paths or preset names
    "source": 0,              # camera index or a video file
    "headless": False, "output": None, "max_frames": 0,
    "realtime": True,         # a video source plays at its frame rate, dropping late frames; false: every frame
    "strength": 1.0, "preserve_color": False, "side_by_side": False, "overlay": True,
    "device": "auto", "precision": "auto", "compile": False,
    "snapshot_dir": "snapshots",
}
USAGE = __doc__


def model_list(value) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def main(argv: list[str]) -> int:
    try:
        cfg = parse_overrides(argv, DEFAULTS, required=("model",), usage=USAGE)
        if cfg["output"] and not cfg["headless"]:
            raise UsageError("output= is written only with headless=true")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from stylenet.inference import ModelLoadError, Stylizer
    from stylenet.video import VideoError, run_live

    try:
        stylizers = [Stylizer.load(m, device=cfg["device"], precision=cfg["precision"], compile=bool(cfg["compile"]))
                     for m in model_list(cfg["model"])]
        if not stylizers:
            raise ValueError("model= names no style")
        print("styles: " + ", ".join(f"{i + 1}={s.name}" for i, s in enumerate(stylizers)), flush=True)
        stats = run_live(
            stylizers, cfg["source"], headless=bool(cfg["headless"]), output=cfg["output"],
            max_frames=int(cfg["max_frames"] or 0), strength=float(cfg["strength"]),
            preserve_color=bool(cfg["preserve_color"]), side_by_side=bool(cfg["side_by_side"]),
            overlay=bool(cfg["overlay"]), snapshot_dir=cfg["snapshot_dir"], realtime=bool(cfg["realtime"]),
        )
    except (ModelLoadError, VideoError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"frames: {stats.frames} (dropped at capture: {stats.dropped})")
    if stats.output:
        print(f"wrote {stats.output}")
    print(f"fps: {stats.fps:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
