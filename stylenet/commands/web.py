"""`python scripts/web.py [port=] [models=] [build=DIR]` / `stylenet-web`: the webcam page, served
on localhost or written as a static folder (configs/tools/web.yaml, docs/web.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from . import app


def web(cfg) -> int:
    from ..styles import cache_root
    from ..web import build, collect_models, make_server, make_site, page_dir, runtime_dir, url_of

    port = app.number(cfg, "port", int)
    if not 0 <= port <= 65535:
        raise ValueError(f"port={port} is not a port number (0-65535)")
    opset = app.number(cfg, "opset", int) if cfg.opset is not None else None
    page = page_dir(str(cfg.page))
    runtime = runtime_dir(page, cfg.runtime)
    cache = Path(str(cfg.cache_dir)) if cfg.cache_dir else cache_root() / "web"
    models = collect_models([str(m) for m in app.as_list(cfg.models) if m is not None], bool(cfg.presets), cache, opset)
    if not models:
        print("warning: no networks to serve (no shipped presets installed, no models=): drop an ONNX export on the page, "
              "or add models=FILE", file=sys.stderr)
    site = make_site(page, runtime, models)
    names = ", ".join(entry["name"] for entry in site.models) or "none"
    if cfg.build:
        out = build(site, Path(str(cfg.build)))
        print(f"wrote {out}: the page, onnxruntime-web and {len(models)} network(s) ({names}); serve it with COOP/COEP "
              "headers for WebAssembly threads (docs/web.md)")
        return 0
    server = make_server(site, str(cfg.host), port, quiet=not cfg.log_requests)
    print(f"serving the webcam page with {len(models)} network(s) ({names}) at {url_of(server)}  (Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return app.run("web", web, argv, config_dir=app.TOOLS_DIR, errors=(ValueError, OSError), lists=("models",))


if __name__ == "__main__":
    sys.exit(main())
