"""Several styles in one network (docs/multistyle.md): training N styles through the real
`train.py` path, one export holding them all, style choice and blends in every consumer
(Stylizer, stylize, webcam, ONNX, TorchScript), and a new style learned by its γ, β alone."""

import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from stylenet.commands import train as train_command
from stylenet.export import check_onnx, export_onnx, export_torchscript
from stylenet.inference import StyleChoiceError, Stylizer
from stylenet.modelfile import FORMAT, ModelLoadError, build_network, read_model_file
from stylenet.tiling import tiled_forward
from stylenet.transformer import ConditionalInstanceNorm2d, TransformerNet
from stylenet.video import LiveState, handle_key, live_styles, run_live

from .conftest import CHICAGO, SHARED, compose, load_script, make_images, tiny_overrides

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = ["wave", "scream", "night"]


# -- a multi-style file without training ---------------------------------------------------------
def multi_export(path: Path, names=NAMES, seed: int = 0) -> Path:
    """A random 3-style network with clearly different γ, β per style, saved as an export."""
    torch.manual_seed(seed)
    net = TransformerNet(8, 1, num_styles=len(names))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, ConditionalInstanceNorm2d):
                m.weight.copy_(1 + 0.5 * torch.randn_like(m.weight))
                m.bias.copy_(0.3 * torch.randn_like(m.bias))
    meta = {"format": FORMAT, "format_version": "1", "style_name": "-".join(names), "styles": json.dumps(names),
            "arch": json.dumps({"class": "TransformerNet", **net.arch()})}
    save_file(net.state_dict(), str(path), metadata=meta)
    return path


@pytest.fixture(scope="module")
def multi_file(tmp_path_factory) -> Path:
    return multi_export(tmp_path_factory.mktemp("multi") / "wave-scream-night.safetensors")


@pytest.fixture(scope="module")
def multi(multi_file) -> Stylizer:
    return Stylizer.load(multi_file, device="cpu")


def test_stylizer_picks_and_blends_styles(multi):
    assert multi.styles == NAMES and "styles=['wave', 'scream', 'night']" in repr(multi)
    x = torch.rand(2, 3, 27, 33, generator=torch.Generator().manual_seed(0))
    pure = {name: multi.stylize_tensor(x, style=name) for name in NAMES}
    assert all((pure[a] - pure[b]).abs().mean() > 1e-3 for a, b in [("wave", "scream"), ("scream", "night"), ("wave", "night")])
    assert torch.equal(multi.stylize_tensor(x), pure["wave"])  # the default: the first style
    assert torch.equal(multi.stylize_tensor(x, style=1), pure["scream"])
    assert torch.equal(multi.stylize_tensor(x, style={"wave": 0.0, "scream": 1.0}), pure["scream"])  # 1.0/0.0: exactly the style
    blend = multi.stylize_tensor(x, style={"wave": 0.7, "night": 0.3})
    assert torch.equal(multi.stylize_tensor(x, style={"wave": 7, "night": 3}), blend)  # normalised to sum 1
    with torch.no_grad():  # a blend interpolates γ, β (not the pictures)
        expected = multi.net(x, torch.tensor([0.7, 0.0, 0.3])).clamp(0, 1)
    torch.testing.assert_close(blend, expected, atol=1e-6, rtol=1e-5)
    assert (blend - 0.7 * pure["wave"] - 0.3 * pure["night"]).abs().max() > 1e-3
    assert multi.label({"wave": 0.7, "night": 0.3}) == "wave70+night30" and multi.label("night") == "night"
    assert multi.label() == "wave"


def test_style_choice_errors_name_the_known_styles(multi, stylizer):
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(StyleChoiceError, match=r"style 'monet' is not in the model 'wave-scream-night': it holds wave, scream, night"):
        multi.stylize(x, style="monet")
    with pytest.raises(StyleChoiceError, match="style 'monet' is not in"):
        multi.stylize(x, style={"wave": 0.5, "monet": 0.5})
    with pytest.raises(StyleChoiceError, match="must be 0 or more"):
        multi.stylize(x, style={"wave": 1.5, "scream": -0.5})
    with pytest.raises(StyleChoiceError, match="add up to 0"):
        multi.stylize(x, style={"wave": 0})
    with pytest.raises(StyleChoiceError, match=r"out of range: it holds wave, scream, night \(0..2\)"):
        multi.stylize(x, style=3)
    with pytest.raises(StyleChoiceError, match="pass a style name, an index or a blend"):
        multi.stylize(x, style=[0.5, 0.5])
    # a single-style file: its own name (or nothing) is fine, another name is an error
    assert torch.equal(stylizer.stylize_tensor(x, style="hokusai"), stylizer.stylize_tensor(x))
    with pytest.raises(StyleChoiceError, match="it holds only 'hokusai'"):
        stylizer.stylize(x, style="wave")


def test_tiled_multi_style_equals_untiled(multi):
    """tiling.FrozenNormStats hooks the conditional norms' InstanceNorm child: the tiled path of
    a multi-style network is the untiled one below max_pixels, for a style and for a blend."""
    net = multi.net
    x = torch.rand(1, 3, 256, 400, generator=torch.Generator().manual_seed(1))
    for style in (torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.5, 0.2, 0.3])):
        with torch.no_grad():
            full = net(x, style)
        tiled = tiled_forward(net, x, tile=208, stats_pixels=256 * 400, style=style)
        assert (tiled - full).abs().max() < 1e-4
    # through the Stylizer: a big uint8 picture (tiled, uint8 end to end) in the chosen style
    s = Stylizer(net, metadata=multi.metadata, device="cpu", max_pixels=200 * 200, tile_size=208)
    from stylenet.imageio import load_image

    image = np.array(load_image(CHICAGO).resize((300, 260)))  # a photo: its downscaled statistics are close
    tiled = s.stylize(image, style="night").astype(float)
    assert np.abs(tiled - s.stylize(image, style="night", tile=False)).mean() < 8
    assert np.abs(tiled - s.stylize(image, style="wave", tile=False)).mean() > np.abs(tiled - s.stylize(image, style="night", tile=False)).mean()


def test_model_file_styles_are_checked_against_the_tensors(multi_file, tmp_path):
    model = read_model_file(multi_file)
    assert model.styles == NAMES and build_network(model).num_styles == 3
    for styles, message in [(json.dumps(["a", "b"]), "hold 3 style.*'styles' metadata names 2"),
                            ("wave", "not a JSON list of distinct style names"),
                            (json.dumps(["a", "a", "b"]), "not a JSON list of distinct style names"),
                            (None, "hold 3 style.*names none")]:
        meta = {k: v for k, v in model.metadata.items() if k != "styles"}
        if styles is not None:
            meta["styles"] = styles
        path = tmp_path / "bad.safetensors"
        save_file(model.state_dict, str(path), metadata=meta)
        with pytest.raises(ModelLoadError, match=message):
            Stylizer.load(path)
    meta = {**model.metadata, "arch": json.dumps({"class": "TransformerNet", "width": 8, "num_residual": 1, "num_styles": 2})}
    save_file(model.state_dict, str(tmp_path / "liar.safetensors"), metadata=meta)
    with pytest.raises(ModelLoadError, match="metadata says width=8, num_residual=1, num_styles=2, .*but its weights .* num_styles=3"):
        Stylizer.load(tmp_path / "liar.safetensors")


# -- webcam: number keys pick a style of the file, b cycles blends ------------------------------
def test_style_and_blend_keys():
    state = LiveState()
    assert handle_key(ord("b"), state, 3, n_blends=0).blend == -1  # nothing to blend: b does nothing
    assert handle_key(ord("b"), state, 3, n_blends=2).blend == 0
    assert handle_key(ord("b"), state, 3, n_blends=2).blend == 1
    assert handle_key(ord("b"), state, 3, n_blends=2).blend == -1  # back to the pure style
    handle_key(ord("b"), state, 3, n_blends=2)
    assert handle_key(ord("3"), state, 3, n_blends=2).index == 2 and state.blend == -1  # a style key ends the blend
    handle_key(ord("b"), state, 3, n_blends=2)
    assert handle_key(ord("n"), state, 3, n_blends=2).index == 0 and state.blend == -1


def test_live_styles_give_a_multi_style_file_a_key_per_style(multi, stylizer):
    choices = live_styles([multi, stylizer])
    assert [c.label for c in choices] == [*NAMES, "hokusai"]
    assert [c.style for c in choices] == [*NAMES, None]
    assert choices[2].blend(0.25) == {"night": 0.75, "wave": 0.25}  # with the file's next style (cyclic)
    assert choices[3].blend(0.25) is None


class KeyCamera:
    """A camera with numbered 16x16 frames; cv2.waitKey is fed from `keys` meanwhile."""

    def __init__(self):
        self.i = 0

    def read(self):
        self.i += 1
        time.sleep(0.002)
        return True, np.full((16, 16, 3), self.i % 256, np.uint8)

    def get(self, prop):
        return 0.0

    def release(self):
        pass


def test_live_loop_switches_styles_and_blends_with_keys(multi, stylizer, monkeypatch):
    keys = iter([ord("2"), ord("b"), ord("b"), ord("b"), ord("4"), ord("b"), ord("q")])
    monkeypatch.setattr("stylenet.video.open_capture", lambda source: KeyCamera())
    monkeypatch.setattr("stylenet.video.open_window", lambda name: None)
    monkeypatch.setattr(cv2, "imshow", lambda *a: None)
    monkeypatch.setattr(cv2, "waitKey", lambda delay: next(keys))
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    seen, overlays = [], []
    for s in (multi, stylizer):
        original = s.stylize
        monkeypatch.setattr(s, "stylize", lambda *a, _s=s, _o=original, **kw: seen.append((_s.name, kw.get("style"))) or _o(*a, **kw))
    monkeypatch.setattr("stylenet.video.draw_overlay", lambda view, text: overlays.append(text.split("  ")[0]) or view)
    stats = run_live([multi, stylizer], 0, blends=[0.25, 0.5], log=lambda s: None)
    assert stats.frames == 7
    assert seen == [("wave-scream-night", "wave"), ("wave-scream-night", "scream"),
                    ("wave-scream-night", {"scream": 0.75, "night": 0.25}), ("wave-scream-night", {"scream": 0.5, "night": 0.5}),
                    ("wave-scream-night", "scream"), ("hokusai", None), ("hokusai", None)]
    assert overlays == ["wave", "scream", "scream75+night25", "scream50+night50", "scream", "hokusai", "hokusai"]


# -- the commands ----------------------------------------------------------------------------------
def test_stylize_command_takes_a_style_or_a_blend(multi_file, multi, tmp_path, capsys):
    stylize = load_script("stylize").main
    out = tmp_path / "out"
    args = [f"model={multi_file}", f"input={CHICAGO}", f"output={out}/", "progress=false", "device=cpu"]
    assert stylize([*args, "style={wave:0.7,night:0.3}"]) == 0
    assert stylize([*args, "style=scream"]) == 0
    from stylenet.imageio import load_image

    photo = np.array(load_image(CHICAGO))
    assert np.array_equal(np.array(load_image(out / "chicago_wave70+night30.png")), multi.stylize(photo, style={"wave": 0.7, "night": 0.3}))
    assert np.array_equal(np.array(load_image(out / "chicago_scream.png")), multi.stylize(photo, style="scream"))
    capsys.readouterr()
    assert stylize([*args, "style=monet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: style 'monet' is not in the model") and "it holds wave, scream, night" in err
    assert "Traceback" not in err and not (out / "chicago_monet.png").exists()


def test_webcam_command_lists_every_style_of_a_multi_style_file(multi_file, export_path, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 24))
    for i in range(4):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    webcam = load_script("webcam").main
    out = tmp_path / "live.mp4"
    assert webcam([f"model={multi_file},{export_path}", f"source={clip}", "headless=true", f"output={out}",
                   "realtime=false", "device=cpu"]) == 0
    assert "styles: 1=wave, 2=scream, 3=night, 4=hokusai" in capsys.readouterr().out and out.is_file()
    assert webcam([f"model={multi_file}", f"source={clip}", "headless=true", "blends=[0.5,1.5]", "device=cpu"]) == 2
    assert "error: blends[1] must be greater than 0 and less than 1, got 1.5" in capsys.readouterr().err


def test_style_lists_become_styles():
    from stylenet.commands.app import hydra_overrides
    from stylenet.styles import preset_names

    def lists(argv):
        return [a for a in hydra_overrides(argv, groups={"style": preset_names()}) if not a.startswith("+style@")]

    assert lists(["style=[hokusai,the_scream]", "trainer.max_steps=3"]) == ["style=hokusai", "styles=[hokusai,the_scream]", "trainer.max_steps=3"]
    assert lists(["style=[hokusai]"]) == ["style=hokusai"]  # one style: the single-style run, as always
    assert hydra_overrides(["style=[hokusai,the_scream]"], groups={"style": ["hokusai"]})[2:] == [
        "+style@style_presets.hokusai=hokusai", "+style@style_presets.the_scream=the_scream"]  # Hydra composes each
    every = lists(["style=all"])
    assert every == [f"style={preset_names()[0]}", f"styles=[{','.join(preset_names())}]"] and "custom" not in every[1]
    assert lists(["style=hokusai", "style.size=64"]) == ["style=hokusai", "style.size=64"]


# -- training several styles through the real train.py path -----------------------------------------
def tiny_multi(tmp: Path, photos: Path, steps: int, extra=()) -> list[str]:
    """tiny_overrides without the single style's image (each style is its preset) and a step
    size that moves γ, β visibly in a few steps."""
    base = [a for a in tiny_overrides(tmp, photos, steps) if not a.startswith("style.")]
    return [*base, f"style_mirrors=[{SHARED / 'data' / 'styles'}]", "optim.warmup_steps=0", "optim.lr=0.02",
            f"hydra.run.dir={tmp / 'run'}", *extra]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("photos"), n=8)


@pytest.fixture(scope="module")
def two_styles(tmp_path_factory, photos, shared):
    """`python train.py style=[hokusai,the_scream] ...` for 4 steps, in-process: its folder."""
    tmp = tmp_path_factory.mktemp("two-styles")
    code = train_command.main(tiny_multi(tmp, photos, 4, ["style=[hokusai,the_scream]", "logger=csv", "trainer.log_every_n_steps=1",
                                                         "samples.every_n_train_steps=4"]))
    assert code == 0
    return tmp


def test_two_styles_train_export_and_differ(two_styles):
    ckpt = torch.load(two_styles / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["style_names"] == ["hokusai", "the_scream"] and hp["model"]["num_styles"] == 2 and hp["style_name"] == "hokusai-the_scream"
    assert hp["style_scales"] == [1.0, 0.6] and hp["loss"]["style_scale"] == 1.0  # each preset's own style.weight
    assert ckpt["state_dict"]["target_gram_fire3"].shape == (2, 128, 128)  # one target per style
    with open(two_styles / "run" / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(row["train/style/hokusai"] and row["train/style/the_scream"] for row in rows if row.get("train/loss"))
    from stylenet.imageio import load_tensor

    grid = load_tensor(two_styles / "run" / "samples" / "step_000004.png")
    assert grid.shape[-2] == 4 + 3 * (32 + 4)  # photos, then one row per style

    (path,) = (two_styles / "ckpt").glob("*.safetensors")
    assert path.name == "hokusai-the_scream.safetensors"
    s = Stylizer.load(path, device="cpu")
    assert s.styles == ["hokusai", "the_scream"]
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    a, b = s.stylize_tensor(x, style="hokusai"), s.stylize_tensor(x, style="the_scream")
    assert (a - b).abs().mean() > 1e-3  # the two styles give different pictures
    assert torch.equal(s.stylize_tensor(x, style={"hokusai": 1.0, "the_scream": 0.0}), a)
    assert torch.equal(s.stylize_tensor(x, style={"hokusai": 0.0, "the_scream": 1.0}), b)


def test_two_styles_onnx_and_torchscript_take_style_weights(two_styles):
    import onnxruntime as ort

    (path,) = (two_styles / "ckpt").glob("*.safetensors")
    net = build_network(read_model_file(path))
    onnx_path = export_onnx(path, two_styles / "multi.onnx")  # checked against PyTorch for a blend on the way
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "style"]
    assert check_onnx(onnx_path, net) < 1e-3
    x = torch.rand(3, 3, 29, 41, generator=torch.Generator().manual_seed(1))
    w = torch.tensor([[0.3, 0.7], [1.0, 0.0], [0.0, 1.0]])
    got = torch.from_numpy(session.run(None, {"image": x.numpy(), "style": w.numpy()})[0])
    with torch.no_grad():
        want = net(x, w)
    assert (got - want).abs().max() < 1e-3
    assert (got[1] - got[2]).abs().mean() > 1e-3
    scripted = torch.jit.load(str(export_torchscript(path, two_styles / "multi.torchscript.pt")))
    with torch.no_grad():
        assert (scripted(x, w) - want).abs().max() < 1e-4


def test_a_new_style_trains_only_its_gamma_beta(two_styles, photos, tmp_path):
    """`style=shipwreck init_from=MULTI train_only=norm`: the export holds 3 styles, and every
    tensor but the new style's γ, β is bit-identical to the file it started from."""
    (base_path,) = (two_styles / "ckpt").glob("*.safetensors")
    assert train_command.main(tiny_multi(tmp_path, photos, 3, ["style=shipwreck", f"init_from={base_path}", "train_only=norm"])) == 0
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    norm_layers = sum(1 for k in ckpt["state_dict"] if k.startswith("added_styles.gamma."))
    assert norm_layers == 3 + 2 * 3 + 2  # the slim net's conditional norms
    # the optimiser held the new rows only: one γ and one β per norm layer
    assert len(ckpt["optimizer_states"][0]["param_groups"][0]["params"]) == 2 * norm_layers
    (path,) = (tmp_path / "ckpt").glob("*.safetensors")
    assert path.name == "hokusai-the_scream-shipwreck.safetensors"
    base, grown = read_model_file(base_path), read_model_file(path)
    assert grown.styles == ["hokusai", "the_scream", "shipwreck"] and grown.arch["num_styles"] == 3
    assert grown.state_dict.keys() == base.state_dict.keys()
    moved = 0
    for key, old in base.state_dict.items():
        new = grown.state_dict[key]
        if old.dim() == 2:  # a conditional norm's γ or β: (styles, channels)
            assert torch.equal(new[:2], old), key
            moved += int(not torch.equal(new[2], old.mean(0)))  # trained away from its start, the mean
        else:
            assert torch.equal(new, old), key
    assert moved == 2 * norm_layers
    s = Stylizer.load(path, device="cpu")
    x = torch.rand(1, 3, 32, 32)
    old = Stylizer.load(base_path, device="cpu")
    assert torch.equal(s.stylize_tensor(x, style="the_scream"), old.stylize_tensor(x, style="the_scream"))


def test_train_only_norm_freezes_the_network(two_styles, photos, tmp_path):
    from stylenet.train import build

    (base_path,) = (two_styles / "ckpt").glob("*.safetensors")
    cfg = compose(tiny_multi(tmp_path, photos, 1, [f"init_from={base_path}", "train_only=norm", "style=shipwreck", "optim.norm_lr=0.05",
                                                   "optim.warmup_steps=7"]))
    _, module, _ = build(cfg, tmp_path / "run")
    assert module.style_names == ["hokusai", "the_scream", "shipwreck"] and module.trained_styles == [2]
    assert not any(p.requires_grad for p in module.transformer.parameters())
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("added_styles.") for n in trainable)
    assert all(p.shape[0] == 1 for p in module.added_styles.parameters())  # one new style's rows
    # the new style starts as the mean of the file's styles
    base = read_model_file(base_path).state_dict
    torch.testing.assert_close(module.transformer.encoder[0][2].weight[2], base["encoder.0.2.weight"].mean(0))
    # only γ, β learn: their own learning rate (optim.norm_lr), not the whole network's
    assert module.effective_lr() == pytest.approx(0.05 * (cfg.data.batch_size / 4) ** 0.5) and float(cfg.optim.lr) != 0.05
    # … and their own warm-up (none by default), not the network's
    assert module.schedule_options()["warmup_steps"] == 0 and cfg.optim.warmup_steps == 7


@pytest.mark.parametrize("extra, message", [
    (["style=shipwreck", "train_only=norm"], "train_only=norm adds styles to a trained network: name it with init_from="),
    (["style=[hokusai,the_scream]", "style.size=64"], "style.KEY=... overrides do not reach a multi-style run"),
    (["style=[hokusai,custom]"], "style 'custom' needs style.image=PATH"),
    (["style=[hokusai,monet]"], "no style preset 'monet'"),
    (["style=[hokusai,the_scream]", "train_only=all"], "train_only='all': use null"),
])
def test_multi_style_mistakes_are_error_lines(photos, tmp_path, capsys, extra, message):
    assert train_command.main(tiny_multi(tmp_path, photos, 1, extra)) == 2
    err = capsys.readouterr().err
    assert "error: " in err and message in err and "Traceback" not in err


def test_a_style_already_in_the_file_is_an_error(two_styles, photos, tmp_path, capsys):
    (base_path,) = (two_styles / "ckpt").glob("*.safetensors")
    assert train_command.main(tiny_multi(tmp_path, photos, 1, ["style=the_scream", f"init_from={base_path}", "train_only=norm"])) == 2
    assert "already holds the_scream (it holds hokusai, the_scream)" in capsys.readouterr().err


def test_multi_style_runs_are_named_after_their_styles(two_styles):
    """The run folder and checkpoint_dir of a multi-style run (Hydra callback name_run)."""
    from stylenet.commands.app import hydra_overrides
    from stylenet.styles import preset_names
    from stylenet.train import run_styles

    def several(argv):  # what train.py hands Hydra: each listed preset composed under style_presets
        return compose(hydra_overrides(argv, groups={"style": preset_names()}))

    cfg = several(["style=[hokusai,the_scream]", "hydra.run.dir=x"])
    assert cfg.style_presets.the_scream.name == "the_scream" and cfg.styles == ["hokusai", "the_scream"]
    assert run_styles(cfg).run_name == "hokusai-the_scream"
    train_command.name_run().on_run_start(cfg)
    assert cfg.checkpoint_dir == "checkpoints/hokusai-the_scream"
    (base_path,) = (two_styles / "ckpt").glob("*.safetensors")
    cfg = compose(["style=shipwreck", f"init_from={base_path}", "train_only=norm"])
    train_command.name_run().on_run_start(cfg)
    assert cfg.checkpoint_dir == "checkpoints/hokusai-the_scream-shipwreck"
    single = compose(["style=hokusai"])
    train_command.name_run().on_run_start(single)
    assert single.checkpoint_dir == "checkpoints/hokusai"
    chosen = several(["style=hokusai", "styles=[hokusai,the_scream]", "run_name=mine"])
    train_command.name_run().on_run_start(chosen)
    assert chosen.checkpoint_dir == "checkpoints/mine"


def test_gallery_shows_every_style_and_blends(multi_file, multi, tmp_path):
    from PIL import Image

    styles = SHARED / "data" / "styles"
    out = tmp_path / "gallery.jpg"
    paintings = f"[{styles / 'hokusai.jpg'},{styles / 'the_scream.jpg'},{styles / 'starry_night.jpg'}]"
    assert load_script("gallery").main([f"models=[{multi_file}]", f"content=[{CHICAGO}]", f"styles={paintings}",
                                        "blends=[{wave:0.5,scream:0.5}]", f"output={out}", "cell=64", "max_kb=0", "device=cpu"]) == 0
    with Image.open(out) as image:
        sheet = np.asarray(image.convert("RGB"), dtype=float)
    assert sheet.shape[1] == 5 * (64 + 4) + 4  # the photo column, 3 styles, 1 blend
    cell = lambda col: sheet[4 + 68 + 18: 4 + 68 + 18 + 64, 4 + 68 * col: 4 + 68 * col + 64]  # noqa: E731
    assert np.abs(cell(4) - cell(1)).mean() > 2 and np.abs(cell(4) - cell(2)).mean() > 2  # the blend is neither style
    bad = load_script("gallery").main([f"models=[{multi_file}]", f"content=[{CHICAGO}]", f"styles={paintings}",
                                       "blends=[{wave:0.5,monet:0.5}]", f"output={tmp_path / 'x.jpg'}", "device=cpu"])
    assert bad == 2 and not (tmp_path / "x.jpg").exists()


def test_a_long_style_list_names_its_run_within_a_file_name():
    """15 styles plus two added ones once made a 237-byte export name, whose atomic-write
    temporary name passed 255 ("File name too long"): long lists keep two names, the count
    and a hash of the whole list."""
    from stylenet.train import MAX_RUN_NAME, RunStyles

    assert RunStyles([], ["hokusai", "the_scream"]).run_name == "hokusai-the_scream"
    names = [f"painting_number_{i:02d}" for i in range(17)]
    long = RunStyles([], names).run_name
    assert len(long) <= MAX_RUN_NAME and long.startswith("painting_number_00-painting_number_01-and-15-more-")
    assert RunStyles([], names).run_name == long  # the same list: the same folder, run after run
    assert RunStyles([], names[:-1] + ["another"]).run_name != long


def test_train_only_norm_refuses_another_architecture(two_styles, photos, tmp_path):
    """Adding a style needs the file's own network: a width the file lacks is named; the
    grown style count is not a difference."""
    from stylenet.modelfile import ModelLoadError
    from stylenet.train import build

    (base_path,) = (two_styles / "ckpt").glob("*.safetensors")
    cfg = compose(tiny_multi(tmp_path, photos, 1, [f"init_from={base_path}", "train_only=norm", "style=shipwreck", "model.width=8"]))
    differs = r"differs from this run's model in width=16 \(this run: 8\); pick the model= it was trained with"
    with pytest.raises(ModelLoadError, match=differs):
        build(cfg, tmp_path / "run")
