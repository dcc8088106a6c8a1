"""How stylenet's modules import each other: no cycle, and a photo painted without OpenCV or PyAV.

The photo test runs the real CLI path and the Python API in a subprocess whose import system
refuses `cv2` and `av` (as on a server without OpenCV's GUI libraries). The cycle test reads
every module with `ast`, lazy imports inside functions included, so a cycle hidden in a
function body (how video.py and videofile.py used to import each other) is found too.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

PACKAGE = ROOT / "stylenet"

BLOCKED = '''
import sys

class Refuse:
    """A finder that fails every import of cv2 and av (and their submodules), as a missing library would."""

    tried = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cv2", "av"):
            Refuse.tried.append(name)
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, Refuse())
'''


def make_model(path: Path) -> Path:
    """A valid export of a narrow network (no training): enough to run the whole path."""
    from safetensors.torch import save_file

    from stylenet.modelfile import FORMAT, FORMAT_VERSION
    from stylenet.transformer import TransformerNet

    net = TransformerNet(width=2, num_residual=1)
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "style_name": "narrow",
                "arch": json.dumps({"class": "TransformerNet", **net.arch()})}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=metadata)
    return path


def test_a_photo_is_painted_with_opencv_and_pyav_blocked(tmp_path):
    from PIL import Image

    model = make_model(tmp_path / "narrow.safetensors")
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (24, 16), (200, 120, 40)).save(photo)
    out = tmp_path / "styled.png"
    script = BLOCKED + f'''
import json
import numpy as np

from stylenet.commands.stylize import main
from stylenet.inference import Stylizer

rc = main(["model={model}", "input={photo}", "output={out}", "device=cpu", "progress=false"])
array = Stylizer.load("{model}", device="cpu").stylize(np.full((16, 24, 3), 128, np.uint8))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("cv2", "av"))
tried = sorted(set(Refuse.tried))
try:
    import cv2  # noqa: F401
    blocked = False
except ImportError:
    blocked = True
print(json.dumps({{"blocked": blocked, "rc": rc, "shape": list(array.shape), "dtype": str(array.dtype), "loaded": loaded,
                   "tried": tried}}))
'''
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["blocked"]  # the blocker works: `import cv2` fails in that process
    assert result["rc"] == 0 and f"wrote {out}" in run.stdout
    assert result["shape"] == [16, 24, 3] and result["dtype"] == "uint8"
    assert result["loaded"] == [] and result["tried"] == []  # nothing on the photo path even tried
    with Image.open(out) as image:
        assert image.size == (24, 16) and image.mode == "RGB"


# -- the import graph ---------------------------------------------------------------------------
def module_files(root: Path) -> dict[str, Path]:
    """{dotted module name: file} for every module of the package at `root`."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_names(module: str, path: Path) -> set[str]:
    """Every absolute name `module` imports anywhere in its file (top level, functions, branches),
    with `from X import y` giving both X and X.y (y may be a submodule)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: the package's modules it imports} (a module's own parent packages left out:
    importing a.b.c always runs a and a.b first, that is no edge of a cycle)."""
    files = module_files(root)
    graph = {}
    for module, path in files.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in files:  # `from pkg.mod import function`: the module pkg.mod
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_walker_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub.b import thing\n")
    (pkg / "sub" / "b.py").write_text("def thing():\n    from ..a import other\n    return other\n")
    (pkg / "c.py").write_text("import pkg.a\nfrom . import sub\n")
    graph = import_graph(pkg)
    assert graph == {"pkg": set(), "pkg.sub": set(), "pkg.a": {"pkg.sub.b"}, "pkg.sub.b": {"pkg.a"}, "pkg.c": {"pkg.a", "pkg.sub"}}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_no_import_cycle_among_stylenet_modules():
    graph = import_graph(PACKAGE)
    assert len(graph) > 30 and "stylenet.commands.stylize" in graph
    found = cycles(graph)
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_video_modules_import_one_way():
    """The live loop imports video files, capture and window; none of those imports the loop,
    and the file module never imports OpenCV (a photo or a video file needs no GUI library)."""
    graph = import_graph(PACKAGE)
    assert {"stylenet.videofile", "stylenet.capture", "stylenet.window"} <= graph["stylenet.video"]
    lower = ("stylenet.videofile", "stylenet.capture", "stylenet.window", "stylenet.virtualcam", "stylenet.temporal")
    assert not [m for m in lower if "stylenet.video" in graph[m]]
    files = module_files(PACKAGE)
    names = imported_names("stylenet.videofile", files["stylenet.videofile"])
    assert not {n for n in names if n.split(".")[0] == "cv2" or n == "stylenet.opencv"}
