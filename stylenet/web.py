"""The webcam in a browser: the page (web/), ONNX Runtime Web and the networks as ONNX, served or built.

The page runs the network itself (onnxruntime-web: WebGPU, else WebAssembly with SIMD and
threads), so all this side does is hand out files: the page, the runtime's files from
`web/node_modules/onnxruntime-web/dist` (`npm ci` in web/, pinned), and every network as an
ONNX graph (the shipped presets' and `models=`), exported once into the cache, keyed by the
file's bytes. WebAssembly threads need SharedArrayBuffer, which browsers give only to a
cross-origin isolated page: every response carries COOP/COEP (`HEADERS`).

The server is the standard library's ThreadingHTTPServer: a fixed set of files on localhost
needs no routing, templates or async framework, and adds no dependency. `build=DIR` writes the
same files as a static folder any static host can serve.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import UserError

#: cross-origin isolation (SharedArrayBuffer, so WebAssembly threads), and no stale copies while developing
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
#: the page's own files, in web/
PAGE_FILES = ("index.html", "app.js", "onnxmeta.js", "style.css")
#: what the page loads from onnxruntime-web's dist/: the WebAssembly build, and the WebGPU one
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
                 "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
RUNTIME_PACKAGE = "onnxruntime-web"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
         ".css": "text/css", ".wasm": "application/wasm", ".json": "application/json", ".onnx": "application/octet-stream"}
#: a build folder says it is one (so a rebuild may replace it)
BUILD_MARKER = "models.json"


class WebError(UserError, ValueError):
    """The page, its runtime or a network cannot be served."""


@dataclass
class Site:
    """Every file the page needs, by URL path (`/index.html`, `/ort/...`, `/models/...`)."""

    files: dict[str, Path] = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)

    def content(self, url: str) -> bytes | Path | None:
        if url == "/models.json":
            return json.dumps({"models": self.models}, indent=1).encode()
        return self.files.get(url)


def page_dir(page: str | os.PathLike = "web") -> Path:
    """The page's folder (`page=`; relative to the working directory, like checkpoints/: the
    source checkout's web/ when run from its root)."""
    folder = Path(page)
    if not (folder / "index.html").is_file():
        raise WebError(f"the page is not at {folder.resolve()} (no index.html): run from the source checkout's root, "
                       "or pass its web/ folder with page=DIR")
    return folder


def runtime_dir(page: Path, runtime: str | os.PathLike | None = None) -> Path:
    """onnxruntime-web's dist/ folder, with every file the page loads."""
    folder = Path(runtime) if runtime else page / "node_modules" / RUNTIME_PACKAGE / "dist"
    missing = [name for name in RUNTIME_FILES if not (folder / name).is_file()]
    if missing:
        version = json.loads((page / "package.json").read_text())["dependencies"][RUNTIME_PACKAGE] \
            if (page / "package.json").is_file() else "VERSION"
        raise WebError(f"onnxruntime-web is missing ({folder} lacks {missing[0]}): run `npm ci` in {page}, or without "
                       f"Node unpack https://registry.npmjs.org/{RUNTIME_PACKAGE}/-/{RUNTIME_PACKAGE}-{version}.tgz "
                       f"into {page / 'node_modules' / RUNTIME_PACKAGE} (docs/web.md), or pass runtime=DIST_DIR")
    return folder


def onnx_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's metadata_props; WebError when it is not an ONNX model onnxruntime can open."""
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load(str(path), load_external_data=False)
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - protobuf's and onnxruntime's errors have no common base
        raise WebError(f"{path} is not an ONNX model onnxruntime can run ({' '.join(str(exc).split())[:160]}); "
                       "export one with python scripts/export.py ckpt=FILE format=onnx") from None
    return {p.key: p.value for p in model.metadata_props}


def kind_of(metadata: dict[str, str]) -> str:
    """`realtime` (the body at half size: shuffle > 1) or `full`, from a network's `arch` metadata."""
    try:
        return "realtime" if int(json.loads(metadata.get("arch") or "{}").get("shuffle") or 1) > 1 else "full"
    except (ValueError, AttributeError):
        return "full"


def web_graph(source: Path, cache: Path, opset: int | None = None) -> Path:
    """A model file → its ONNX graph in `cache`, exported (and checked against PyTorch) once,
    keyed by the file's bytes, the export options and the exporter's version; an .onnx file is taken as it is."""
    if source.suffix.lower() == ".onnx":
        onnx_metadata(source)
        return source
    from importlib.metadata import version

    from .export import export_onnx

    digest = hashlib.sha256(f"opset={opset} torch={version('torch')}".encode())  # the exporter makes the graph
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    out = cache / f"{digest.hexdigest()[:32]}.onnx"
    if not out.is_file():
        print(f"exporting {source} to ONNX for the page (once; cached in {cache})", flush=True)
        export_onnx(source, out, opset=opset)
    return out


def collect_models(models, presets: bool, cache: Path, opset: int | None = None) -> list[tuple[str, str, Path]]:
    """(name, kind, ONNX file) for every shipped preset network (when `presets`) and every `models=` entry
    (a path, an .onnx file, a preset or checkpoints/ name), in that order. The name is the network's
    `style_name` metadata (else its file name), the kind `realtime` or `full` (its `arch`)."""
    from .modelfile import read_model_file
    from .presets import resolve_model, shipped_presets

    sources: list[Path] = []
    if presets:
        for variants in shipped_presets().values():
            sources += [variants[k] for k in ("realtime", "full") if k in variants]
    for spec in models or []:
        path = resolve_model(str(spec))
        if not path.is_file():
            raise WebError(f"models={spec}: no such file; name an export (.safetensors), a checkpoint, an .onnx file "
                           "or a preset")
        sources.append(path)
    found = []
    for source in sources:
        graph = web_graph(source, cache, opset)
        metadata = onnx_metadata(graph) if source.suffix.lower() == ".onnx" else read_model_file(source).metadata
        name = metadata.get("style_name") or source.name.split(".")[0].removesuffix("-realtime")
        found.append((name, kind_of(metadata), graph))
    return found


def make_site(page: Path, runtime: Path, models: list[tuple[str, str, Path]]) -> Site:
    """The URL → file map: the page at /, the runtime at /ort/, the networks at /models/<name>[-realtime].onnx,
    and /models.json: [{name, realtime, full}] (either may be missing; the page reads styles from the graphs)."""
    site = Site()
    for name in PAGE_FILES:
        site.files[f"/{name}"] = page / name
    site.files["/"] = page / "index.html"
    for name in RUNTIME_FILES:
        site.files[f"/ort/{name}"] = runtime / name
    entries: dict[str, dict] = {}
    for name, kind, graph in models:
        entry = entries.setdefault(name, {"name": name})
        if kind in entry:  # a second network of the same name and kind: the later one gets its own entry
            n = 2
            while f"{name}-{n}" in entries:
                n += 1
            name = f"{name}-{n}"
            entry = entries.setdefault(name, {"name": name})
        url = f"models/{name}{'-realtime' if kind == 'realtime' else ''}.onnx"
        entry[kind] = url
        site.files[f"/{url}"] = graph
    site.models = list(entries.values())
    return site


class Handler(BaseHTTPRequestHandler):
    """GET/HEAD of the site's files, each with the isolation headers; anything else is 404."""

    site: Site
    quiet = True

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.respond(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self.respond(body=True)

    def respond(self, body: bool) -> None:
        url = unquote(urlsplit(self.path).path)
        content = self.site.content(url)
        if content is None:
            self.send_error(HTTPStatus.NOT_FOUND, f"no such file: {url}")
            return
        try:
            data = content if isinstance(content, bytes) else None
            size = len(data) if data is not None else content.stat().st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", TYPES.get(Path(url if url != "/" else "/index.html").suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if not body:
                return
            if data is not None:
                self.wfile.write(data)
            else:
                with open(content, "rb") as f:
                    shutil.copyfileobj(f, self.wfile)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away mid-file (a reload): not the server's problem

    def end_headers(self) -> None:
        for key, value in HEADERS.items():  # every response, errors too: the page reads its own 404s
            self.send_header(key, value)
        super().end_headers()

    def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's signature
        if not self.quiet:
            super().log_message(format, *args)


def chromium_args(clip: str | os.PathLike | None = None) -> list[str]:
    """Headless Chromium's flags for the page (tests, mode=web): no GPU, no background traffic,
    and a fake camera that plays `clip` (a .y4m or .mjpeg file) in a loop."""
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--use-fake-device-for-media-stream"]
    return args + ([f"--use-file-for-fake-video-capture={clip}"] if clip else [])


def still_clip(rgb, path: str | os.PathLike, frames: int = 2) -> Path:
    """An RGB uint8 picture (H, W, 3; even sides) → a still .y4m clip for Chromium's fake camera:
    4:2:0 YCbCr in BT.601 studio range, what Chromium's capture path turns back into RGB."""
    import numpy as np

    x = np.asarray(rgb, dtype=np.float32)
    h, w = x.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"a 4:2:0 clip needs even sides, not {w}x{h}")
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    half = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    planes = [np.rint(p).clip(0, 255).astype(np.uint8).tobytes() for p in (y, half(cb), half(cr))]
    frame = b"FRAME\n" + b"".join(planes)
    from .imageio import atomic_write

    header = f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420mpeg2\n".encode()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(header + frame * frames))


def make_server(site: Site, host: str, port: int, quiet: bool = True) -> ThreadingHTTPServer:
    """A bound server for `site`; a port in use or an address that is not this machine's is a WebError."""
    handler = type("SiteHandler", (Handler,), {"site": site, "quiet": quiet})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise WebError(f"port {port} is in use on {host}: pick another with port=N (port=0: any free one)") from None
        raise WebError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); use host=127.0.0.1 or another port=") from None
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("localhost" if host == "::" else host)
    return f"http://{shown}:{port}/"


def build(site: Site, out: Path) -> Path:
    """The site as a static folder: written beside `out` and renamed into place, so a failed build
    leaves nothing half-written; an earlier build there is replaced, any other non-empty folder refused."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / BUILD_MARKER).is_file())):
        raise WebError(f"build={out} exists and is not an earlier build of the page: pick a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for url, source in site.files.items():
            if url == "/":
                continue
            target = tmp / url.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        (tmp / BUILD_MARKER).write_bytes(site.content("/models.json"))
        # the isolation headers in the form Netlify and Cloudflare Pages read (other hosts: docs/web.md)
        (tmp / "_headers").write_text("/*\n" + "".join(f"  {k}: {v}\n" for k, v in HEADERS.items() if k != "Cache-Control"))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WebError(f"cannot write build={out} ({exc.strerror or exc})") from None
    return out


__all__ = ["HEADERS", "Site", "WebError", "build", "chromium_args", "collect_models", "make_server", "make_site", "onnx_metadata",
           "page_dir", "runtime_dir", "still_clip", "url_of", "web_graph"]
