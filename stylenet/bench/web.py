"""`python scripts/benchmark.py mode=web`: the webcam page in headless Chromium against native onnxruntime.

The same ONNX graph of a real-time network runs twice per frame size on the same machine, in one
run (a busy machine slows both alike): in the page, on Chromium's fake camera playing a still
clip (camera → canvas → tensor → onnxruntime-web WASM → blend → canvas; FPS = frames painted per
second), and in Python's onnxruntime with the same number of threads doing the same per-frame
work (uint8 frame → float tensor → network → blend → uint8). Ends with the ratio at 640x480.
`profile=true` adds the per-operator times of both runtimes, side by side (each one's own
profiler: onnxruntime-web's read off the console, native onnxruntime's trace file).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from stylenet.errors import UserError
from stylenet.web import chromium_args, collect_models, make_server, make_site, page_dir, runtime_dir, still_clip, url_of

from . import model_config


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UserError(f"sizes: {text!r} is not WIDTHxHEIGHT") from None
    return w, h


def random_realtime(folder: Path, model: str) -> Path:
    """A `model=realtime` export with random weights (speed does not depend on them)."""
    import torch
    from safetensors.torch import save_file

    from stylenet.modelfile import checkpoint_metadata
    from stylenet.transformer import TransformerNet

    torch.manual_seed(0)
    net = TransformerNet(**model_config(model))
    meta = checkpoint_metadata({"hyper_parameters": {"style_name": f"random-{model}", "model": net.arch()}})
    path = folder / f"random-{model}-realtime.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=meta)
    return path


def test_frame(width: int, height: int) -> np.ndarray:
    """A photo-like frame (smooth gradients, edges, noise) of the given size."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 23 + yy / 31)], axis=-1)
    base[(xx // 40 + yy // 40) % 2 == 0] *= 0.6
    return ((base + 0.05 * rng.standard_normal(base.shape)).clip(0, 1) * 255).astype(np.uint8)


def native_fps(graph: Path, frame: np.ndarray, threads: int, seconds: float, spinning: bool) -> tuple[float, float]:
    """(FPS, network ms) of onnxruntime in Python doing the page's per-frame work on `frame`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def once() -> float:
        x = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32) / 255
        start = time.perf_counter()
        (y,) = session.run(None, {name: x})
        ms = 1000 * (time.perf_counter() - start)
        np.rint(np.clip(y[0], 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)
        return ms

    once()  # warm-up
    frames, network, start = 0, 0.0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or frames < 3:
        network += once()
        frames += 1
    return frames / elapsed, network / frames


def browser_fps(url: str, clip: Path, chromium: str, seconds: float, warmup: int, timeout: float,
                profile: int = 0) -> tuple[float, float, dict]:
    """(FPS, network ms, state) of the page on the fake camera playing `clip`; with `profile`
    also onnxruntime-web's profile events (state['events'])."""
    from playwright.sync_api import sync_playwright

    events: list[dict] = []

    def console(message) -> None:
        text = message.text.strip().rstrip(",")
        if profile and text.startswith("{") and '"cat"' in text:
            try:
                events.append(json.loads(text))
            except ValueError:
                pass

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=chromium_args(clip))
        try:
            page = browser.new_context(permissions=["camera"]).new_page()
            page.on("console", console)
            page.goto(url)
            read = "() => ({state: stylenet.state, frames: stylenet.frames, ms: stylenet.networkMs, error: stylenet.error, " \
                   "threads: stylenet.threads, width: stylenet.width, height: stylenet.height, backend: stylenet.backend})"
            deadline = time.monotonic() + timeout
            while (state := page.evaluate(read))["frames"] < warmup:
                if state["state"] in ("error", "no-camera") or state["error"] or time.monotonic() > deadline:
                    raise UserError(f"the page did not paint {warmup} frames in {timeout:g} s: {state['error'] or state['state']}")
                time.sleep(0.2)
            t0, f0, ms = time.monotonic(), state["frames"], []
            while time.monotonic() - t0 < seconds or page.evaluate(read)["frames"] - f0 < 3:
                time.sleep(0.25)
                ms.append(page.evaluate("stylenet.networkMs"))
            state = page.evaluate(read)
            fps = (state["frames"] - f0) / (time.monotonic() - t0)
            if profile:
                page.wait_for_function("stylenet.profile === 'done'", timeout=timeout * 1000)
                time.sleep(0.5)
            state["events"] = events
            return fps, float(np.median(ms)), state
        finally:
            browser.close()


def by_operator(events: list[dict], skip: int = 2) -> dict[str, float]:
    """Mean ms per run by operator type, from onnxruntime's profile events (the page's or
    native's: the same trace format); the first `skip` runs are warm-up."""
    nodes = [e for e in events if e.get("cat") == "Node"]
    if any(e["name"].endswith("_kernel_time") for e in nodes):  # not the fences around each kernel
        nodes = [e for e in nodes if e["name"].endswith("_kernel_time")]
    if not nodes:
        return {}
    runs: list[list[dict]] = []
    for event in nodes:
        if event["name"] == nodes[0]["name"] or not runs:
            runs.append([])
        runs[-1].append(event)
    runs = runs[skip:] or runs
    ms: collections.Counter = collections.Counter()
    for run_events in runs:
        for event in run_events:
            ms[event["args"].get("op_name", "?")] += event["dur"] / 1000 / len(runs)
    return dict(ms.most_common())


def providers(events: list[dict]) -> str:
    """The execution providers that ran the profiled kernels (a fallback off the expected one shows here)."""
    names = {e["args"].get("provider", "?").removesuffix("ExecutionProvider") for e in events
             if e.get("cat") == "Node" and "args" in e and "provider" in e["args"]}
    return ", ".join(sorted(names)) or "?"


def native_profile(graph: Path, frame: np.ndarray, threads: int, runs: int, spinning: bool) -> tuple[dict[str, float], str]:
    """Native onnxruntime's own per-operator times (its profiler) on `frame`: ms per run by
    operator type, for the table beside the page's, and the providers that ran them."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    with tempfile.TemporaryDirectory(prefix="stylenet-ort-profile-") as tmp:
        options.enable_profiling, options.profile_file_prefix = True, str(Path(tmp) / "native")
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        x = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32) / 255
        for _ in range(runs + 2):
            session.run(None, {session.get_inputs()[0].name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    return by_operator(events, skip=2), providers(events)


def print_profiles(size: str, page: dict[str, float], native: dict[str, float]) -> None:
    """The page's and native onnxruntime's ms per frame side by side, by operator."""
    page_total, native_total = sum(page.values()) or 1.0, sum(native.values()) or 1.0
    print(f"per-operator profile at {size} (ms per frame; each runtime's own profiler):")
    print(f"  {'operator':24s} {'page ms':>8s} {'share':>6s} {'native ms':>10s} {'share':>6s} {'page/native':>11s}")
    # the largest on either side (native's NCHWc layout reorders have no page counterpart)
    largest = sorted(set(page) | set(native), key=lambda o: -max(page.get(o, 0.0) / page_total, native.get(o, 0.0) / native_total))
    for op in sorted(largest[:16], key=lambda o: (-page.get(o, 0.0), -native.get(o, 0.0))):
        p, n = page.get(op, 0.0), native.get(op, 0.0)
        print(f"  {op:24s} {p:8.2f} {100 * p / page_total:5.1f}% {n:10.2f} {100 * n / native_total:5.1f}%"
              f" {p / n if n else float('inf'):11.1f}")
    print(f"  {'all':24s} {page_total:8.2f} {'':6s} {native_total:10.2f} {'':6s} {page_total / native_total:11.1f}")


def run(cfg) -> list[dict]:
    from stylenet.styles import cache_root

    chromium = str(cfg.chromium)
    if not Path(chromium).is_file():
        raise UserError(f"chromium={chromium} not found: apt-get install chromium (Debian), or name the browser with chromium=PATH")
    sizes = [parse_size(s) for s in cfg.sizes]
    threads = int(cfg.browser_threads or min(4, -(-(os.cpu_count() or 1) // 2)))  # the page's default: half the cores, <= 4
    native_threads = int(cfg.native_threads or threads)
    with tempfile.TemporaryDirectory(prefix="stylenet-bench-web-") as tmp:
        tmp = Path(tmp)
        source = Path(str(cfg.model)) if cfg.model else random_realtime(tmp, str(cfg.network))
        page = page_dir(str(cfg.page))
        (name, kind, graph), = collect_models([str(source)], presets=False, cache=cache_root() / "web")
        site = make_site(page, runtime_dir(page, cfg.runtime), [(name, kind, graph)])
        server = make_server(site, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = url_of(server)
        log(f"network: {source} ({kind}); graph {graph}; page at {base}")
        rows = []
        try:
            for width, height in sizes:
                clip = still_clip(test_frame(width, height), tmp / f"clip{width}x{height}.y4m")
                url = (f"{base}?backend=wasm&threads={threads}&model={name}&width={width}&height={height}"
                       + ("&spin=1" if cfg.spinning else "") + (f"&profile={cfg.profile_frames}" if cfg.profile else "")
                       + (f"&{cfg.page_options}" if cfg.page_options else ""))
                fps, ms, state = browser_fps(url, clip, chromium, float(cfg.seconds), int(cfg.warmup_frames),
                                             float(cfg.timeout), int(cfg.profile_frames) if cfg.profile else 0)
                if (state["width"], state["height"]) != (width, height):
                    raise UserError(f"the fake camera gave {state['width']}x{state['height']}, not {width}x{height}")
                nfps, nms = native_fps(graph, test_frame(width, height), native_threads, float(cfg.seconds), bool(cfg.spinning))
                rows.append({"size": f"{width}x{height}", "browser_fps": fps, "browser_ms": ms, "threads": state["threads"],
                             "native_fps": nfps, "native_ms": nms, "ratio": fps / nfps})
                if cfg.profile:
                    native, native_providers = native_profile(graph, test_frame(width, height), native_threads,
                                                              int(cfg.profile_frames), bool(cfg.spinning))
                    print_profiles(f"{width}x{height}", by_operator(state["events"]), native)
                    print(f"  providers: page {providers(state['events'])}; native {native_providers}")
        finally:
            server.shutdown()
            server.server_close()
    print(f"{'size':>9s}  {'browser WASM FPS':>16s}  {'network ms':>10s}  {'native ORT FPS':>14s}  {'network ms':>10s}  {'ratio':>5s}")
    for r in rows:
        print(f"{r['size']:>9s}  {r['browser_fps']:16.2f}  {r['browser_ms']:10.1f}  {r['native_fps']:14.2f}  {r['native_ms']:10.1f}"
              f"  {r['ratio']:5.2f}")
    spin = "spinning" if cfg.spinning else "sleeping"
    print(f"browser: headless Chromium, onnxruntime-web WASM (SIMD) with {rows[0]['threads'] if rows else threads} thread(s); "
          f"native: onnxruntime {__import__('onnxruntime').__version__} in Python with {native_threads} thread(s); "
          f"idle threads {spin} on both sides")
    at = next((r for r in rows if r["size"] == "640x480"), rows[-1] if rows else None)
    if at is not None:
        print(f"browser/native FPS ratio at {at['size']}: {at['ratio']:.2f}")
    return rows
