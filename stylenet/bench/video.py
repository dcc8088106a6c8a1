"""`python scripts/benchmark.py mode=video model=EXPORT [stable=EXPORT] [input=VIDEO]`: flicker.

Lai et al. 2018's temporal warping error (`stylenet.temporal`) of stylized clips, with the
flow of the *input* frames: for the input itself (the floor: what flow and interpolation
leave), the per-frame network (`model`), the same network trained with the stability term
(`stable`, `loss.temporal_weight > 0`), and the per-frame network stabilised at inference
(`stabilize=true`'s blending). FPS counts the network (and the stabiliser) per frame, batch 1.
Clips: a user's video or folder of videos (`input`), else clips with known camera motion
generated from `photos` (`bench/clips.py`). The last line is
`stable/per-frame warping error ratio: R` (the target of docs/video.md is R ≤ 0.6).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from .clips import photo_clips


def run(cfg) -> list[dict]:
    from stylenet.inference import Stylizer
    from stylenet.temporal import FlowCache, Stabilizer, warping_error

    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    clips = load_clips(cfg)
    if cfg["save_clips"]:
        for name, frames in clips.items():
            print(f"clip: {save_clip(frames, Path(str(cfg['save_clips'])) / f'{name}.mp4')}")
    specs = {"per-frame": cfg["model"], **({"stable (trained)": cfg["stable"]} if cfg["stable"] else {})}
    networks = {label: Stylizer.load(str(spec), device=cfg["device"], precision=cfg["precision"]) for label, spec in specs.items()}
    stab = dict(cfg["stabilize"])
    print(f"flicker: {len(clips)} clips; flow DIS {cfg['flow_preset']} on the input frames; networks: "
          + ", ".join(f"{label} {spec}" for label, spec in specs.items())
          + f"; stabilised at inference: blend {stab['blend']}, sigma {stab['sigma']}, flow {stab['preset']}; "
          f"device {cfg['device']}, {torch.get_num_threads()} threads")
    rows, shown, stab_ms = [], {}, []
    for name, frames in clips.items():
        flows = FlowCache(frames, str(cfg["flow_preset"]))
        rows.append({"clip": name, "method": "input (floor)", "error": warping_error(frames, flows), "fps": float("nan")})
        outputs, seconds = {}, {}
        for label, stylizer in networks.items():
            outputs[label], seconds[label] = stylize_frames(stylizer, frames)
            rows.append({"clip": name, "method": label, "error": warping_error(outputs[label], flows), "fps": 1 / seconds[label]})
        stabilizer = Stabilizer.from_config(stab)
        start, stabilized = time.perf_counter(), []
        for frame, out in zip(frames, outputs["per-frame"]):
            stabilized.append(stabilizer(frame, out))
        stab_s = (time.perf_counter() - start) / len(frames)
        stab_ms.append(1000 * stab_s)
        per_frame_s = stab_s + seconds["per-frame"]
        outputs["stabilised (inference)"] = stabilized
        rows.append({"clip": name, "method": "stabilised (inference)", "error": warping_error(stabilized, flows), "fps": 1 / per_frame_s})
        for row in rows[-(len(networks) + 2):]:
            print(format_row(row), flush=True)
        shown.setdefault("clip", (name, frames, outputs))
    summary = summarize(rows)
    if cfg["objective"]:
        for row in summary:
            spec = specs.get(row["method"])
            row["objective"] = median_objective(cfg, spec) if spec else float("nan")
    print()
    print(format_table(summary))
    if cfg["gif"]:
        print(f"side by side: {save_gif(*shown['clip'], cfg['gif'], float(cfg['gif_scale']))}")
    if cfg["sheet"]:
        print(f"flicker maps: {save_sheet(*shown['clip'], cfg['sheet'], str(cfg['flow_preset']))}")
    h, w = next(iter(clips.values()))[0].shape[:2]
    print(f"stabiliser cost: {statistics.median(stab_ms):.1f} ms/frame at {w}x{h} (DIS {stab['preset']} flow, warp, blend)")
    by = {r["method"]: r for r in summary}
    base = by["per-frame"]["error"]
    print(f"stabilised-at-inference/per-frame warping error ratio: {by['stabilised (inference)']['error'] / base:.3f}")
    if "stable (trained)" in by:
        print(f"stable/per-frame warping error ratio: {by['stable (trained)']['error'] / base:.3f}")
    else:
        print("stable/per-frame warping error ratio: n/a (pass stable=EXPORT: the network trained with loss.temporal_weight)")
    return summary


def load_clips(cfg) -> dict[str, list[np.ndarray]]:
    """A user's video (or folder of videos), else clips generated from the photos."""
    from stylenet.videofile import VIDEO_EXTENSIONS, VideoError, is_video_path

    size = tuple(int(v) for v in cfg["size"])
    if not cfg["input"]:
        from stylenet.imageio import find_images

        photos = find_images(Path(str(cfg["photos"])))[: int(cfg["max_clips"])]
        return photo_clips(photos, list(cfg["motions"]), int(cfg["frames"]), size)
    src = Path(str(cfg["input"]))
    files = sorted(p for p in src.rglob("*") if is_video_path(p)) if src.is_dir() else [src]
    if not files:
        raise VideoError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {src}")
    clips = {}
    for path in files[: int(cfg["max_clips"])]:
        frames = read_video(path, int(cfg["max_frames"]))
        if len(frames) < 2:
            raise VideoError(f"{path} has {len(frames)} frame(s); the warping error needs at least 2")
        clips[path.stem] = frames
    return clips


def read_video(path: Path, max_frames: int) -> list[np.ndarray]:
    from stylenet.capture import open_capture

    cap, frames = open_capture(path), []
    try:
        while len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames


def stylize_frames(stylizer, frames: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Each frame alone (batch 1, as live video runs); median seconds per frame after a warm-up."""
    stylizer.stylize(frames[0], bgr=True)
    outputs, times = [], []
    for frame in frames:
        start = time.perf_counter()
        outputs.append(stylizer.stylize(frame, bgr=True))
        times.append(time.perf_counter() - start)
    return outputs, statistics.median(times)


def median_objective(cfg, spec) -> float:
    """The network's style+content+TV objective (its recorded loss config), median over `photos` at
    `objective_size`²: what the stability term must not cost (the quality benchmark's scoring)."""
    from stylenet.imageio import find_images, load_tensor
    from stylenet.presets import resolve_model
    from stylenet.preimage import style_transfer

    from .gatys import scored_model, square

    stylizer, _, weights, lossnet, targets, _ = scored_model(cfg, resolve_model(str(spec)), "fp32")
    values = []
    for path in find_images(Path(str(cfg["photos"]))):
        x = square(load_tensor(path), int(cfg["objective_size"])).to(stylizer.device)
        with torch.no_grad():
            values.append(float(style_transfer(lossnet, x, targets, weights)(stylizer.stylize_tensor(x).float().clamp(0, 1))["loss"]))
    return statistics.median(values)


def summarize(rows: list[dict]) -> list[dict]:
    """Per method: mean warping error over the clips, median FPS."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        fps = [r["fps"] for r in mine if r["fps"] == r["fps"]]
        out.append({"clip": f"mean of {len(mine)}", "method": method, "error": float(np.mean([r["error"] for r in mine])),
                    "fps": statistics.median(fps) if fps else float("nan")})
    return out


def format_row(r: dict) -> str:
    fps = "" if r["fps"] != r["fps"] else f"{r['fps']:.1f}"
    objective = r.get("objective", float("nan"))
    objective = "" if objective != objective else f"{objective:.4g}"
    return f"{r['clip'][:26]:<26} {r['method']:<24} {r['error']:>14.6f} {fps:>8} {objective:>10}"


def format_table(rows: list[dict]) -> str:
    head = f"{'clips':<26} {'method':<24} {'warping error':>14} {'FPS':>8} {'objective':>10}"
    return "\n".join([head, "-" * len(head), *(format_row(r) for r in rows)])


def save_clip(frames: list[np.ndarray], path: Path, fps: float = 12.0) -> Path:
    from stylenet.videofile import FrameWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with FrameWriter(path, fps, (frames[0].shape[1], frames[0].shape[0])) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def save_gif(name: str, frames: list[np.ndarray], outputs: dict[str, list[np.ndarray]], path, scale: float) -> Path:
    """input | each method, side by side, labelled, as a looping GIF (PIL)."""
    import cv2
    from PIL import Image

    from stylenet.imageio import atomic_write
    from stylenet.window import draw_overlay

    columns = {"input": frames, **outputs}
    pictures = []
    for t in range(len(frames)):
        tiles = []
        for label, clip in columns.items():
            tile = cv2.resize(clip[t], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            tiles.append(draw_overlay(np.ascontiguousarray(tile), label))
        pictures.append(Image.fromarray(np.concatenate(tiles, axis=1)[..., ::-1]))
    save = lambda tmp: pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=83, loop=0)
    return atomic_write(Path(str(path)), save)


def save_sheet(name: str, frames: list[np.ndarray], outputs: dict[str, list[np.ndarray]], path, preset: str) -> Path:
    """One still: for the middle frame of the first clip, each method's picture above its
    flicker map (|frame - previous frame warped along the input's flow|, occlusions black,
    ×4 so a 0.25 difference is white): what the warping error averages."""
    import cv2
    from PIL import Image

    from stylenet.imageio import atomic_write
    from stylenet.temporal import FlowCache, warp
    from stylenet.window import draw_overlay

    t = len(frames) // 2
    backward, mask = FlowCache(frames[t - 1: t + 1], preset).pairs[0]
    columns = {"input": frames, **outputs}
    tiles = []
    for label, clip in columns.items():
        diff = np.abs(clip[t].astype(np.float32) - warp(clip[t - 1].astype(np.float32), backward)).mean(-1) / 255.0
        heat = cv2.applyColorMap(np.clip(diff * 4 * 255 * mask, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
        error = float((diff[mask] ** 2).mean()) if mask.any() else 0.0
        tiles.append(np.concatenate([draw_overlay(clip[t].copy(), label), draw_overlay(heat, f"{error:.5f}")], axis=0))
    sheet = np.concatenate(tiles, axis=1)[..., ::-1]
    return atomic_write(Path(str(path)), lambda tmp: Image.fromarray(np.ascontiguousarray(sheet)).save(tmp, format="JPEG", quality=85))
