"""`python scripts/webcam.py model=a,b [source=0|VIDEO_FILE]` / `stylenet-webcam`: live style transfer
in a window, headless into a file, and/or into a virtual camera (configs/tools/webcam.yaml,
docs/inference.md). What cannot work here (no display for the window, no pyvirtualcam) is an
error before the models load."""

from __future__ import annotations

import os
import sys

from . import app

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # a missing camera is our error message, not OpenCV's warning


def webcam(cfg) -> None:
    from ..errors import UserError
    from ..inference import Stylizer
    from ..video import frame_limit, live_styles, run_live
    from ..window import check_display

    if cfg.output and not cfg.headless:
        raise UserError("output= is written only with headless=true")
    max_frames = frame_limit(app.number(cfg, "max_frames", int) if cfg.max_frames else 0)  # before the models load
    from ..outputs import output_file, require_path

    output = output_file(cfg.output) if cfg.output else None  # not a folder, a device or a FIFO
    snapshot_dir = require_path(cfg.snapshot_dir, "snapshot_dir")
    virtual_cam = bool(cfg.get("virtual_cam", False))
    if not cfg.headless:
        check_display()
    if virtual_cam:
        from ..virtualcam import require

        require()
    if cfg.get("keep_host_memory", True):
        from ..allocator import keep_freed_memory

        keep_freed_memory()  # every frame allocates the same blocks: reuse them (docs/inference.md)
    stylizers = [Stylizer.load(str(m), variant=cfg.get("variant"), device=cfg.device, precision=cfg.precision,
                               compile=bool(cfg.compile), **app.render_options(cfg)) for m in app.as_list(cfg.model)]
    if not stylizers:
        raise UserError("model= names no style")
    blends = [app.number({"blends": b}, "blends") for b in app.as_list(cfg.blends or [])]
    if any(not 0 < b < 1 for b in blends):
        raise UserError(f"blends={list(blends)}: each is the share of the next style, between 0 and 1 (exclusive)")
    for stylizer in stylizers:
        print(f"model: {stylizer.source}", flush=True)
    print(f"network: {stylizers[0].engine}", flush=True)
    print("styles: " + ", ".join(f"{i + 1}={c.label}" for i, c in enumerate(live_styles(stylizers))), flush=True)
    stabilizer = None
    if cfg.stabilize:
        from ..temporal import Stabilizer

        stabilizer = Stabilizer.from_config(cfg.stabilizer)
    stats = run_live(
        stylizers, cfg.source, headless=bool(cfg.headless), output=output, max_frames=max_frames,
        strength=app.number(cfg, "strength"), preserve_color=bool(cfg.preserve_color), side_by_side=bool(cfg.side_by_side),
        overlay=bool(cfg.overlay), snapshot_dir=snapshot_dir, realtime=bool(cfg.realtime), stabilizer=stabilizer,
        blends=blends, encoder_preset=str(cfg.encoder_preset), virtual_cam=virtual_cam,
    )
    print(f"frames: {stats.frames} (dropped at capture: {stats.dropped})")
    if stats.output:
        print(f"wrote {stats.output}")
    print(f"fps: {stats.fps:.2f}")


def main(argv: list[str] | None = None) -> int:
    return app.run("webcam", webcam, argv, config_dir=app.TOOLS_DIR, errors=(ValueError, OSError), lists=("model",))


if __name__ == "__main__":
    sys.exit(main())
