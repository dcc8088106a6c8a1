"""Configuration enters at the edge: Hydra composes it (the commands, `app.compose`), argv is
adapted in one small function (`app.hydra_overrides`), and no library module reads YAML,
touches sys.path or finds files from the checkout."""

from __future__ import annotations

import re

import pytest

from stylenet.commands import app
from stylenet.errors import UserError
from stylenet.styles import preset_names

from .conftest import ROOT

#: the config edge: the commands (app.py composes with Hydra; their options tables)
EDGE = ("stylenet/commands/",)
READS_YAML = re.compile(r"OmegaConf\.load\(|yaml\.(safe_|full_|unsafe_)?load\(|open\([^)\n]*\.ya?ml")
FROM_CHECKOUT = re.compile(r"__file__|\.parents\[|REPO_ROOT|\bsys\.path\b|\brunpy\b")


def sources(*folders: str):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8").splitlines()


def hits(pattern: re.Pattern, skip=()) -> list[str]:
    return [f"{name}:{n}: {line.strip()}" for name, lines in sources("stylenet", "scripts") if not name.startswith(skip)
            for n, line in enumerate(lines, 1) if pattern.search(line)]


def test_the_scans_see_what_they_look_for():
    for line in ('cfg = OmegaConf.load(CONFIG_DIR / "train.yaml")', "data = yaml.safe_load(f)", 'with open(folder / "x.yaml") as f:'):
        assert READS_YAML.search(line), line
    for line in ("ROOT = Path(__file__).resolve().parents[2]", "sys.path.insert(0, str(SCRIPTS))", "runpy.run_path(script)"):
        assert FROM_CHECKOUT.search(line), line
    assert not READS_YAML.search('"""configs/style/<name>.yaml: a preset"""')


def test_no_module_outside_the_edge_reads_yaml():
    assert hits(READS_YAML, skip=EDGE) == []


def test_no_path_from_the_checkout_nor_sys_path_tricks():
    # window.py: OpenCV's own install folder (cv2.__file__), not the checkout
    assert [h for h in hits(FROM_CHECKOUT) if "cv2.__file__" not in h] == []


def test_hydra_overrides_is_the_one_argv_adapter():
    groups = {"style": preset_names()}
    assert app.hydra_overrides(["model=a,b", "sizes=1,2", "x=[c,d]"], lists=["model"]) == ["model=[a,b]", "sizes=1,2", "x=[c,d]"]
    assert app.hydra_overrides(["input=/tmp/ü{1}.jpg", "output=ok.png"]) == ["input='/tmp/ü{1}.jpg'", "output=ok.png"]
    several = app.hydra_overrides(["style=[hokusai,the_scream]", "trainer.max_steps=3"], groups=groups)
    assert several == ["style=hokusai", "styles=[hokusai,the_scream]", "+style@style_presets.hokusai=hokusai",
                       "+style@style_presets.the_scream=the_scream", "trainer.max_steps=3"]
    assert app.hydra_overrides(several) == several  # what the adapter wrote passes it again unchanged
    assert app.hydra_overrides(["style=all"], groups=groups)[1] == f"styles=[{','.join(preset_names())}]"
    assert app.hydra_overrides(["style=[mosaic]", "style=hokusai"], groups=groups) == ["style=mosaic", "style=hokusai"]
    with pytest.raises(UserError, match="no style preset 'monet'"):
        app.hydra_overrides(["style=[hokusai,monet]"], groups=groups)
    with pytest.raises(UserError, match=r"style=\[\] names no style"):
        app.hydra_overrides(["style=[]"], groups=groups)


def test_compose_reads_the_training_tree_also_inside_a_running_command(tmp_path):
    cfg = app.compose(["model=slim", "style=mosaic"])
    assert cfg.model.width == 16 and cfg.style.name == "mosaic" and list(cfg.style_mirrors)
    with pytest.raises(UserError, match="Could not find 'model/nope'.*johnson"):
        app.compose(["model=nope"])

    seen = {}

    def task(tool_cfg) -> int:  # a tool's own config (tools/ root) is running: compose still reads the training tree
        seen["tool"], seen["model"] = tool_cfg.mode, app.compose(["model=realtime"]).model
        return 0

    assert app.run("benchmark", task, ["mode=infer"], config_dir=app.TOOLS_DIR) == 0
    assert seen["tool"] == "infer" and "shuffle" in seen["model"]


def test_benchmarks_take_the_training_groups_from_hydra():
    from stylenet.bench import model_config
    from stylenet.bench.gatys import preset_weight
    from stylenet.bench.train import loss_config, speed_config

    assert model_config("slim") == app.compose(["model=slim"]).model
    assert speed_config("fast", {"compile": False})["compile"] is False
    loss = loss_config("squeezenet1_1", None)
    assert loss["weights"] is None and loss["content_layer"] == loss["layers"]["squeezenet1_1"]["content"]
    assert preset_weight("the_scream") == app.compose(["style=the_scream"]).style.weight and preset_weight("x.jpg") == 1.0
    with pytest.raises(UserError, match="unknown network 'alexnet'"):
        loss_config("alexnet", None)


#: the rooms of docs/architecture.md (the config edge: stylenet.commands, stylenet.bench)
INFERENCE = "inference onnxrun tiling upsample video capture window videofile virtualcam temporal opencv web".split()
TRAINING = "train module data preresize callbacks loggers speed stability lossnet gatys preimage optimize gallery hubcard".split()
SHARED = "transformer losses modelfile schema presets hub imageio outputs device allocator resources errors export styles".split()


def test_rooms_import_downward():
    from .test_imports import PACKAGE, import_graph

    graph = import_graph(PACKAGE)

    def reach(module: str) -> set[str]:
        seen, todo = set(), [module]
        while todo:
            for name in graph.get(todo.pop(), ()):
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
        return seen

    edge = ("stylenet.commands", "stylenet.bench")
    assert {m: sorted(d) for m, deps in graph.items() if not m.startswith(edge) if (d := {i for i in deps if i.startswith(edge)})} == {}
    assert {i for m, deps in graph.items() if m.startswith("stylenet.bench") for i in deps if i.startswith("stylenet.commands")} \
        <= {"stylenet.commands.app"}  # a benchmark composes the training's groups through app.compose, nothing else
    rooms = {*INFERENCE, *TRAINING, *SHARED}
    assert {m.removeprefix("stylenet.") for m in graph if not m.startswith(edge) and m.count(".") == 1} <= rooms  # every module has a room
    assert {m: sorted(t for t in TRAINING if f"stylenet.{t}" in reach(f"stylenet.{m}")) for m in INFERENCE} == {m: [] for m in INFERENCE}
    shared_up = {m: sorted(x for x in reach(f"stylenet.{m}") if x.removeprefix("stylenet.") not in SHARED and x != "stylenet") for m in SHARED}
    assert shared_up == {m: [] for m in SHARED}
