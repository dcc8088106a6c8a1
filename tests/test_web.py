"""The webcam page (web/, stylenet/web.py, scripts/web.py): the server and its errors, the static
build, and the page itself in a real headless Chromium (Debian's chromium driven by Playwright),
fed by Chromium's fake camera playing a still clip made here.

Without chromium, Playwright or web/node_modules the browser tests skip, and fail when CI=true
(.ci/run installs them)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.commands.web import main as web_main
from stylenet.web import (HEADERS, RUNTIME_FILES, chromium_args, collect_models, make_server, make_site, page_dir,
                          runtime_dir, still_clip, url_of)

from .conftest import CHICAGO, ROOT

# loopback, never through a proxy: urllib's module-wide opener keeps the proxies of the
# environment it first saw, and another test module sets a dead one to simulate no network
urlopen = urllib.request.build_opener(urllib.request.ProxyHandler({})).open

CHROMIUM = Path("/usr/bin/chromium")
PAGE = ROOT / "web"
SIZE = (160, 120)  # the fake camera's frames: small, so the network is quick in WASM


def need(condition: bool, why: str) -> None:
    """Skip without the browser pieces; fail instead in CI, where .ci/run installs them."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (CI=true: .ci/run installs it)")
        pytest.skip(why)


def have_runtime() -> bool:
    try:
        runtime_dir(page_dir(PAGE))
    except Exception:  # noqa: BLE001 - any reason it is not there
        return False
    return True


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    """A `model=realtime` export with random weights (seeded; a visible skip gain), as a file on disk."""
    from safetensors.torch import save_file

    from stylenet.modelfile import checkpoint_metadata
    from stylenet.transformer import TransformerNet

    torch.manual_seed(0)
    net = TransformerNet(width=16, num_residual=3, kernel=3, shuffle=2, skip=True)
    with torch.no_grad():
        net.skip_gain.fill_(0.5)
    path = tmp_path_factory.mktemp("web") / "tiny-realtime.safetensors"
    meta = checkpoint_metadata({"hyper_parameters": {"style_name": "tiny", "model": net.arch()}})
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=meta)
    return path


@pytest.fixture(scope="module")
def graph(network, tmp_path_factory) -> Path:
    """The network's ONNX graph as the server makes it (exported once, checked against PyTorch)."""
    ((name, kind, path),) = collect_models([str(network)], presets=False, cache=tmp_path_factory.mktemp("webcache"))
    assert (name, kind) == ("tiny", "realtime")
    return path


@pytest.fixture(scope="module")
def site(graph, tmp_path_factory):
    """The site served on a free port: the tiny network, and `broken` (bytes that are no ONNX model)."""
    need(have_runtime(), "onnxruntime-web is not in web/node_modules (run npm ci in web/)")
    page = page_dir(PAGE)
    broken = tmp_path_factory.mktemp("broken") / "broken.onnx"
    broken.write_bytes(b"\x08\x07this is not a model" * 10)
    served = make_site(page, runtime_dir(page), [("tiny", "realtime", graph), ("broken", "full", broken)])
    server = make_server(served, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url_of(server)
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A lossless crop of a shared photo (PNG: the browser decodes exactly these pixels)."""
    rgb = np.asarray(Image.open(CHICAGO).convert("RGB").resize((256, 170)))[20:140, 40:200]  # 160x120
    path = tmp_path_factory.mktemp("photo") / "chicago.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


@pytest.fixture(scope="module")
def playwright_driver():
    """One Playwright driver for the module: its sync API refuses a second one in the same thread."""
    need(CHROMIUM.is_file(), f"no {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_driver, photo, tmp_path_factory):
    """Headless Chromium with a fake camera playing a still clip of the photo."""
    clip = still_clip(photo[1], tmp_path_factory.mktemp("clip") / "still.y4m")
    launched = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(clip))
    yield launched
    launched.close()


def open_page(browser, url: str, camera: bool = True, init: str | None = None):
    context = browser.new_context(permissions=["camera"] if camera else [], accept_downloads=True)
    page = context.new_page()
    if init:
        page.add_init_script(init)
    page.goto(url)
    return page


def wait_for(page, expression: str, timeout: float = 60.0):
    page.wait_for_function(expression, timeout=timeout * 1000)
    return page.evaluate("() => ({...stylenet})")


def canvas_pixels(page, canvas_id: str) -> np.ndarray:
    """A canvas's RGB pixels, through a PNG data URL (lossless)."""
    data = page.evaluate(f"document.getElementById('{canvas_id}').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("RGB"))


def reference(graph: Path, rgb: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """onnxruntime in Python on the same pixels: the page's arithmetic (blend, clamp, round)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    x = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    y = np.clip(y[0].transpose(1, 2, 0), 0, 1) * 255
    return np.clip(np.rint(strength * y + (1 - strength) * rgb), 0, 255)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


# ---- the server and the command --------------------------------------------------------------

def test_still_clip_is_a_y4m_of_the_picture(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255
    data = still_clip(rgb, tmp_path / "c.y4m", frames=3).read_bytes()
    header, _, rest = data.partition(b"\n")
    assert header == b"YUV4MPEG2 W6 H4 F30:1 Ip A1:1 C420mpeg2"
    frame = 6 + 24 + 6 + 6
    assert len(rest) == 3 * frame and rest.count(b"FRAME\n") == 3
    assert rest[6:30] == bytes([81]) * 24 and rest[30:36] == bytes([90]) * 6 and rest[36:42] == bytes([240]) * 6  # BT.601 red
    with pytest.raises(ValueError, match="even sides"):
        still_clip(np.zeros((3, 4, 3), np.uint8), tmp_path / "odd.y4m")


def test_server_sends_isolation_headers_and_only_the_site(site, graph):
    with urlopen(site) as response:
        assert response.status == 200 and b"app.js" in response.read()
        for key, value in HEADERS.items():
            assert response.headers[key] == value
    with urlopen(site + "models.json") as response:
        models = json.loads(response.read())["models"]
    assert models == [{"name": "tiny", "realtime": "models/tiny-realtime.onnx"}, {"name": "broken", "full": "models/broken.onnx"}]
    with urlopen(site + "models/tiny-realtime.onnx") as response:
        assert response.read() == graph.read_bytes()
    with urlopen(site + "ort/ort-wasm-simd-threaded.wasm") as response:
        assert response.headers["Content-Type"] == "application/wasm" and response.read(4) == b"\0asm"
    for path in ("../pyproject.toml", "%2e%2e/pyproject.toml", "node_modules/onnxruntime-web/package.json", "package.json"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urlopen(site + path)
        assert info.value.code == 404 and info.value.headers["Cross-Origin-Embedder-Policy"] == "require-corp"


def test_command_errors(graph, tmp_path, capsys):
    need(have_runtime(), "onnxruntime-web is not in web/node_modules (run npm ci in web/)")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        assert web_main([f"page={PAGE}", f"port={port}", "presets=false", f"models={graph}"]) == 2
        assert f"error: port {port} is in use on 127.0.0.1" in capsys.readouterr().err
    finally:
        taken.close()
    assert web_main([f"page={PAGE}", "presets=false", f"models={tmp_path / 'missing.safetensors'}"]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph at all")
    assert web_main([f"page={PAGE}", "presets=false", f"models={bad}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.onnx is not an ONNX model" in err and err.count("\n") == 1
    bad.with_suffix(".safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    assert web_main([f"page={PAGE}", "presets=false", f"models={bad.with_suffix('.safetensors')}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.safetensors" in err and err.count("\n") == 1
    assert web_main([f"page={PAGE}", "port=http", "presets=false"]) == 2
    assert "error: port='http' is not a whole number" in capsys.readouterr().err
    assert web_main([f"page={PAGE}", "presets=false", f"runtime={tmp_path}"]) == 2
    assert "onnxruntime-web is missing" in capsys.readouterr().err


def test_build_writes_a_static_site(graph, tmp_path, capsys):
    need(have_runtime(), "onnxruntime-web is not in web/node_modules (run npm ci in web/)")
    out = tmp_path / "site"
    assert web_main([f"page={PAGE}", f"build={out}", "presets=false", f"models={graph}"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    for name in ("index.html", "app.js", "onnxmeta.js", "style.css", *(f"ort/{f}" for f in RUNTIME_FILES)):
        assert (out / name).is_file(), name
    assert (out / "models" / "tiny-realtime.onnx").read_bytes() == graph.read_bytes()
    assert json.loads((out / "models.json").read_text())["models"] == [{"name": "tiny", "realtime": "models/tiny-realtime.onnx"}]
    assert "Cross-Origin-Embedder-Policy: require-corp" in (out / "_headers").read_text()
    (out / "stale.txt").write_text("from an earlier build")
    assert web_main([f"page={PAGE}", f"build={out}", "presets=false", f"models={graph}"]) == 0  # an earlier build is replaced whole
    assert not (out / "stale.txt").exists() and (out / "index.html").is_file()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    assert web_main([f"page={PAGE}", f"build={other}", "presets=false", f"models={graph}"]) == 2
    assert "is not an earlier build" in capsys.readouterr().err and (other / "mine.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


# ---- the page in a real browser ----------------------------------------------------------------

@pytest.mark.slow
def test_page_paints_the_camera_like_onnxruntime(browser, site, graph, tmp_path):
    page = open_page(browser, site + "?backend=wasm&model=tiny")
    state = wait_for(page, "stylenet.frames >= 3")
    assert state["state"] == "running" and state["error"] is None
    assert (state["width"], state["height"]) == SIZE and state["backend"] == "wasm"
    assert page.evaluate("self.crossOriginIsolated") and state["threads"] >= 1
    status = page.locator("#status").inner_text()
    assert "FPS" in status and f"{SIZE[0]}×{SIZE[1]}" in status and "wasm" in status
    # the still clip gives the same frame every time: the camera canvas holds the painted frame's input
    camera, painted = canvas_pixels(page, "camera"), canvas_pixels(page, "output")
    assert camera.shape == painted.shape == (SIZE[1], SIZE[0], 3) and camera.std() > 20  # the photo, not a blank frame
    assert mean_abs(painted, reference(graph, camera)) <= 2.0
    assert mean_abs(painted, camera) > 10  # painted, not the camera passed through
    with page.expect_download() as download:
        page.click("#snapshot")
    saved = tmp_path / "snap.png"
    download.value.save_as(saved)
    assert Image.open(saved).size == SIZE and download.value.suggested_filename.endswith(".png")
    page.context.close()


@pytest.mark.slow
def test_photo_is_painted_at_full_size_like_onnxruntime(browser, site, graph, photo, tmp_path):
    path, rgb = photo
    page = open_page(browser, site + "?backend=wasm&model=tiny&camera=0")
    wait_for(page, "stylenet.state === 'photos' && document.getElementById('style').options.length > 0")
    page.set_input_files("#file", str(path))
    state = wait_for(page, "stylenet.photo.state === 'done'")
    assert (state["photo"]["width"], state["photo"]["height"]) == (rgb.shape[1], rgb.shape[0])
    assert mean_abs(canvas_pixels(page, "photo"), reference(graph, rgb)) <= 2.0
    page.locator("#strength").fill("0.5")
    page.set_input_files("#file", str(path))
    wait_for(page, "stylenet.photo.state === 'done'")
    assert mean_abs(canvas_pixels(page, "photo"), reference(graph, rgb, strength=0.5)) <= 2.0
    # an ONNX export dropped on the page joins the picker, named from its metadata
    dropped = tmp_path / "mine.onnx"
    shutil.copyfile(graph, dropped)
    page.set_input_files("#file", str(dropped))
    page.wait_for_function("[...document.getElementById('style').options].some(o => o.text === 'tiny' && o.selected)"
                           " && document.getElementById('style').options.length === 3")
    assert page.evaluate("stylenet.error") is None
    page.context.close()


@pytest.fixture(scope="module")
def software_gpu_browser(playwright_driver, photo, tmp_path_factory):
    """Headless Chromium whose only WebGPU adapter is software (SwiftShader: `--enable-unsafe-webgpu`
    without a GPU), as a browser on a machine with no usable GPU may offer it."""
    clip = still_clip(photo[1], tmp_path_factory.mktemp("clip") / "still.y4m")
    launched = playwright_driver.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=chromium_args(clip) + ["--enable-unsafe-webgpu"])
    yield launched
    launched.close()


@pytest.mark.slow
def test_auto_passes_over_a_software_webgpu_adapter(software_gpu_browser, site):
    page = open_page(software_gpu_browser, site + "?model=tiny")
    state = wait_for(page, "stylenet.frames >= 2")
    assert state["gpu"].startswith("software") and state["backend"] == "wasm" and state["error"] is None
    assert "WebGPU here is software only" in page.locator("#status").inner_text()
    page.context.close()


@pytest.mark.slow
def test_webgpu_backend_paints_like_onnxruntime(software_gpu_browser, site, graph):
    """The page's WebGPU path (onnxruntime-web's webgpu build, GPU tensors) on the software adapter:
    slow (seconds a frame), but the same pixels a real GPU's path must give."""
    page = open_page(software_gpu_browser, site + "?backend=webgpu&model=tiny")
    state = wait_for(page, "stylenet.frames >= 2 && stylenet.networkMs > 0", timeout=120)
    assert state["backend"] == "webgpu" and state["error"] is None
    assert "webgpu (software adapter)" in page.locator("#status").inner_text()
    camera, painted = canvas_pixels(page, "camera"), canvas_pixels(page, "output")
    assert camera.std() > 20 and mean_abs(painted, reference(graph, camera)) <= 2.0
    assert mean_abs(painted, camera) > 10
    page.context.close()


@pytest.mark.slow
def test_page_errors_are_shown_in_words(browser, site, tmp_path):
    # a file that is neither a picture nor a network, and one that only says it is a network
    page = open_page(browser, site + "?backend=wasm&camera=0")
    wait_for(page, "stylenet.state === 'photos'")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    page.set_input_files("#file", str(notes))
    assert "notes.txt is not an image or an ONNX network" in wait_for(page, "stylenet.error !== null")["error"]
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"\x00\x01\x02 not protobuf at all")
    page.set_input_files("#file", str(fake))
    error = wait_for(page, "stylenet.error && stylenet.error.includes('fake.onnx')")["error"]
    assert "fake.onnx is not an ONNX network this page can run: not an ONNX model" in error
    assert page.locator("#error").is_visible()
    page.context.close()
    # a served network that does not load: the message, and the camera itself instead of a blank canvas
    page = open_page(browser, site + "?backend=wasm&model=broken")
    error = wait_for(page, "stylenet.error !== null && stylenet.frames >= 2")["error"]
    assert 'Could not load the network "broken"' in error and "not an ONNX model" in error
    assert mean_abs(canvas_pixels(page, "output"), canvas_pixels(page, "camera")) == 0
    page.context.close()
    # the camera refused (no permission given)
    page = open_page(browser, site + "?backend=wasm", camera=False)
    state = wait_for(page, "stylenet.state === 'no-camera'")
    assert state["error"].startswith("The camera was refused")
    page.context.close()
    # no camera at all
    page = open_page(browser, site + "?backend=wasm", init="navigator.mediaDevices.getUserMedia = () => "
                     "Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));")
    assert wait_for(page, "stylenet.state === 'no-camera'")["error"].startswith("No camera was found")
    page.context.close()
    # a browser without WebAssembly
    page = open_page(browser, site, init="delete globalThis.WebAssembly;")
    state = wait_for(page, "stylenet.state === 'error'")
    assert "no WebAssembly" in state["error"] and page.locator("#error").is_visible()
    page.context.close()


# ---- mode=web: the benchmark ------------------------------------------------------------------

def test_by_operator_means_kernel_times_after_warmup():
    """Both runtimes' traces: kernels only (not the fences around them), mean ms per run, warm-up runs left out."""
    from stylenet.bench.web import by_operator

    def run(conv_us: int) -> list[dict]:
        return [{"cat": "Node", "name": "conv_fence_before", "dur": 5, "args": {"op_name": "Conv"}},
                {"cat": "Node", "name": "conv_kernel_time", "dur": conv_us, "args": {"op_name": "Conv"}},
                {"cat": "Node", "name": "relu_kernel_time", "dur": 1000, "args": {"op_name": "Relu"}},
                {"cat": "Session", "name": "model_run", "dur": 99999}]

    events = run(90000) + run(90000) + run(4000) + run(6000)  # two slow warm-up runs
    assert by_operator(events) == pytest.approx({"Conv": 5.0, "Relu": 1.0})
    assert by_operator([]) == {}


def test_native_profile_times_each_operator(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from stylenet.bench.web import native_profile, test_frame

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    scale = numpy_helper.from_array(np.ones(8, np.float32), "scale")
    bias = numpy_helper.from_array(np.zeros(8, np.float32), "bias")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("InstanceNormalization", ["c", "scale", "bias"], ["out"])]
    model = helper.make_model(helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, None, None])], [weight, scale, bias]),
        opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "tiny.onnx")
    ms, ran_on = native_profile(tmp_path / "tiny.onnx", test_frame(64, 48), threads=1, runs=3, spinning=False)
    assert {"Conv", "InstanceNormalization"} <= set(ms) and all(v > 0 for v in ms.values())
    assert ran_on == "CPU"
    assert not list(tmp_path.glob("*.json")) and not list(Path.cwd().glob("native*.json"))  # the trace is not left behind


@pytest.mark.slow
def test_benchmark_mode_web_prints_the_ratio_and_both_profiles(network, tmp_path):
    """The real `scripts/benchmark.py mode=web` on a tiny network and frame: the page in Chromium
    beside native onnxruntime. A process of its own, as a user runs it (and Playwright's sync API
    allows one driver per thread: this module's browsers hold one)."""
    need(CHROMIUM.is_file(), f"no {CHROMIUM} (apt-get install chromium)")
    need(have_runtime(), "onnxruntime-web is not in web/node_modules (run npm ci in web/)")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "mode=web", f"model={network}",
                          "sizes=[96x64]", "seconds=1", "browser_threads=1", "profile=true", "profile_frames=4",
                          f"page={PAGE}"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    row = next(line for line in out.splitlines() if line.strip().startswith("96x64"))
    browser_fps, browser_ms, native_fps, native_ms, ratio = (float(v) for v in row.split()[1:])
    assert browser_fps > 0 and native_fps > 0 and ratio == pytest.approx(browser_fps / native_fps, abs=0.01)
    assert "per-operator profile at 96x64" in out
    conv = next(line for line in out.splitlines() if line.strip().startswith("Conv "))
    page_ms, native_conv_ms = float(conv.split()[1]), float(conv.split()[3])
    assert page_ms > 0 and native_conv_ms > 0
    assert "providers: page CPU; native CPU" in out  # onnxruntime-web's WASM build runs its CPU provider
    assert out.rstrip().splitlines()[-1].startswith("browser/native FPS ratio at 96x64: ")
