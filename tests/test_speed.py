"""Issue 5, training throughput: `fast` computes what `reference` computes, every switch turns
off, the compile fallback, the pre-resize cache, and the benchmark command lines."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from stylenet.module import StyleTransferModule
from stylenet.speed import eager_plan, resolve_speed

from .conftest import CONFIGS, HOKUSAI, ROOT, SQUEEZENET, compose, load_script, make_images, tiny_overrides

FAST = yaml.safe_load((CONFIGS / "speed" / "fast.yaml").read_text())
REFERENCE = yaml.safe_load((CONFIGS / "speed" / "reference.yaml").read_text())
#: fast with the switches that change numerics (bf16) off: must match reference in fp32
FAST_FP32 = {**FAST, "autocast": False, "lossnet_half": False, "compile": False}

LOSSES = {
    "squeezenet1_1": {"network": "squeezenet1_1", "weights": str(SQUEEZENET), "content_layer": "fire3",
                      "style_layers": {"relu1": 1.0, "fire2": 1.0, "fire3": 1.0, "fire5": 1.0, "fire7": 1.0},
                      "content_weight": 1.0, "style_weight": 1.0e4, "tv_weight": 1.0},
    "vgg16": {"network": "vgg16", "weights": None, "content_layer": "relu2_2",
              "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0},
              "content_weight": 1.0, "style_weight": 1.0e5, "tv_weight": 1.0},
}


_BUILT: dict[str, StyleTransferModule] = {}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from a second thread, and on a loaded machine every parallel
    region waits for both threads to be scheduled (12 tiny training steps: 30 s instead of 1 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(speed: dict, network: str = "squeezenet1_1") -> StyleTransferModule:
    """A small module (same weights every call) with these speed switches, not yet set up."""
    if network not in _BUILT:  # torchvision's VGG16 takes seconds to build: once per session
        torch.manual_seed(0)
        style = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
        _BUILT[network] = StyleTransferModule(model={"width": 8, "num_residual": 1}, loss=LOSSES[network],
                                              optim={"lr": 1e-3}, style_image=style, batch_size=2, image_size=32)
    module = copy.deepcopy(_BUILT[network])
    module.hparams.speed = dict(speed)
    return module


def losses_and_grads(module: StyleTransferModule, batch: torch.Tensor):
    module.setup_speed()
    terms = module.compute_losses(batch)
    terms["loss"].backward()
    grads = {n: p.grad.detach().clone() for n, p in module.transformer.named_parameters()}
    return {k: v.detach() for k, v in terms.items()}, grads


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


# -- auto decisions ---------------------------------------------------------------------------
def test_reference_is_all_off_and_empty_speed_is_reference():
    off = {k: v for k, v in resolve_speed(REFERENCE, "cpu").items() if not k.startswith("compile_")}
    assert not any(off.values())
    assert resolve_speed({}, "cuda") == resolve_speed(REFERENCE, "cuda")


def test_auto_values_resolve_per_device(monkeypatch):
    monkeypatch.setattr("stylenet.speed.cpu_has_fast_bf16", lambda: False)
    cpu = resolve_speed(FAST, "cpu")
    assert cpu["truncate_content"] and cpu["phase_upsample"] and not cpu["single_pass"]
    assert not cpu["autocast"] and not cpu["compile"] and not cpu["lossnet_half"]
    assert not cpu["channels_last"]  # fp32 on a CPU: NCHW (with phase_upsample) measured faster
    assert cpu["narrow_conv"] and cpu["keep_host_memory"]
    monkeypatch.setattr("stylenet.speed.cpu_has_fast_bf16", lambda: True)
    bf16 = resolve_speed(FAST, "cpu")
    assert bf16["autocast"] and bf16["channels_last"]  # measured faster where oneDNN has native bf16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = resolve_speed(FAST, "cuda")
    assert gpu["autocast"] and gpu["compile"] and gpu["lossnet_half"] and gpu["cudnn_benchmark"]
    assert not gpu["narrow_conv"] and not gpu["keep_host_memory"]  # not measured on a GPU yet


def test_an_onednn_cap_below_bf16_means_no_native_bf16(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 (how an AVX2-only CPU is emulated on an AMX one) leaves oneDNN
    no native bf16: auto then picks what it picks on such a CPU (fp32, NCHW)."""
    from stylenet.speed import cpu_has_fast_bf16  # the real check (conftest patches stylenet.device's name)

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    native = cpu_has_fast_bf16()
    for cap in ("AVX2", "avx512_core"):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert cpu_has_fast_bf16() is False
        switches = resolve_speed(FAST, "cpu")
        assert not switches["autocast"] and not switches["channels_last"]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert cpu_has_fast_bf16() is native  # a cap at or above bf16 changes nothing


# -- fast == reference in fp32 ------------------------------------------------------------------
@pytest.mark.parametrize("network", ["squeezenet1_1", "vgg16"])
@pytest.mark.parametrize("single_pass, channels_last", [(False, False), (False, True), (True, True)])
def test_fast_and_reference_same_losses_and_gradients(network, single_pass, channels_last):
    batch = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    reference = build(REFERENCE, network)
    ref_terms, ref_grads = losses_and_grads(reference, batch)
    assert not any(layer.phase for layer in reference.transformer.decoder[:2])  # the classic upsampling
    fast = build({**FAST_FP32, "single_pass": single_pass, "channels_last": channels_last}, network)
    fast_terms, fast_grads = losses_and_grads(fast, batch)
    assert fast.transformer.encoder[0][1].weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert all(layer.phase for layer in fast.transformer.decoder[:2])  # NCHW: computed at the low resolution
    assert fast.transformer.decoder[-1].narrow and not reference.transformer.decoder[-1].narrow
    for key in ("loss", "content", "style", "tv"):
        assert rel(fast_terms[key], ref_terms[key]) < 1e-4, key
    flat = lambda g: torch.cat([v.flatten() for v in g.values()])  # noqa: E731
    assert rel(flat(fast_grads), flat(ref_grads)) < 1e-4
    total = flat(ref_grads).norm()
    for name, g in ref_grads.items():
        if g.norm() > 1e-6 * total:  # conv biases before instance norm have a zero gradient by construction
            assert rel(fast_grads[name], g) < 1e-4, name


# -- every switch turns off ----------------------------------------------------------------------
def _count_calls(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    return calls


def test_single_pass_and_truncate_content_switches():
    batch = torch.rand(2, 3, 32, 32)
    for speed, lossnet_calls, deepest_calls in [
        ({**FAST_FP32, "single_pass": True}, [4], 1),                       # one pass over 2B
        ({**FAST_FP32, "single_pass": False}, [2, 2], 1),                   # content pass cut short
        ({**FAST_FP32, "single_pass": False, "truncate_content": False}, [2, 2], 2),
    ]:
        module = build(speed)
        net_calls = _count_calls(module.lossnet)
        deepest = _count_calls(list(module.lossnet.features.children())[-1])
        module.compute_losses(batch)
        assert sorted(net_calls) == sorted(lossnet_calls), speed
        assert len(deepest) == deepest_calls, speed


def test_channels_last_and_lossnet_half_switches():
    batch = torch.rand(2, 3, 32, 32)
    on = build({**FAST_FP32, "channels_last": True, "lossnet_half": True})
    on.setup_speed()
    conv = on.transformer.encoder[0][1].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert on.lossnet.mean.dtype == torch.bfloat16 and next(on.lossnet.parameters()).dtype == torch.bfloat16
    terms = on.compute_losses(batch)
    assert terms["loss"].dtype == torch.float32 and torch.isfinite(terms["loss"])  # Grams and losses in fp32
    terms["loss"].backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in on.transformer.parameters())

    off = build({**FAST_FP32, "channels_last": False, "lossnet_half": False})
    off.setup_speed()
    assert off.transformer.encoder[0][1].weight.is_contiguous()
    assert next(off.lossnet.parameters()).dtype == torch.float32


def test_compile_switch():
    on = build({**FAST_FP32, "compile": True, "compile_backend": "eager"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        plan = on.setup_speed()
    assert plan.compiled and plan.transformer is not on.transformer and plan.lossnet is not on.lossnet
    assert set(on.state_dict()) == set(build(REFERENCE).state_dict())  # compiled beside the module: same keys
    batch = torch.rand(2, 3, 32, 32)
    assert torch.allclose(on.compute_losses(batch)["loss"], on.compute_losses(batch, eager_plan(on, "cpu"))["loss"], rtol=1e-4)
    off = build({**FAST_FP32, "compile": False})
    plan = off.setup_speed()
    assert not plan.compiled and plan.transformer is off.transformer and plan.lossnet is off.lossnet


def test_keep_host_memory_is_set_by_the_fast_step_only(monkeypatch):
    """keep_host_memory tells glibc to keep freed memory (process-wide: test_allocator.py) when
    the step is set up, and the classic recipe leaves malloc alone."""
    calls = []
    monkeypatch.setattr("stylenet.speed.keep_freed_memory", lambda on=True: calls.append(on) or True)
    build(REFERENCE).setup_speed()
    assert calls == []
    build(FAST_FP32).setup_speed()
    assert calls == [True]
    build({**FAST_FP32, "keep_host_memory": False}).setup_speed()
    assert calls == [True]


def test_narrow_conv_switch():
    on, off = build(FAST_FP32), build({**FAST_FP32, "narrow_conv": False})
    on.setup_speed()
    off.setup_speed()
    assert on.transformer.decoder[-1].narrow and not off.transformer.decoder[-1].narrow


def test_autocast_switch():
    from stylenet.speed import cpu_has_fast_bf16, resolve_precision

    cpu = {"accelerator": "cpu", "precision": None}
    assert resolve_precision(cpu, {"autocast": True}) == "bf16-mixed"
    assert resolve_precision(cpu, {"autocast": False}) == "32-true"
    assert resolve_precision(cpu, {"autocast": "auto"}) == ("bf16-mixed" if cpu_has_fast_bf16() else "32-true")
    assert resolve_precision({"accelerator": "cpu", "precision": "32"}, {"autocast": True}) == "32"


def test_cudnn_benchmark_switch(tmp_path):
    from stylenet.train import build as build_run

    before = torch.backends.cudnn.benchmark
    try:
        images = make_images(tmp_path / "photos", n=4)
        for value in (True, False):
            build_run(compose([*tiny_overrides(tmp_path, images), f"speed.cudnn_benchmark={value}"]), tmp_path / "run")
            assert torch.backends.cudnn.benchmark is value
    finally:
        torch.backends.cudnn.benchmark = before


# -- training: same quality, compile fallback ------------------------------------------------------
def _train(tmp_path: Path, speed_overrides: list[str], steps: int):
    from stylenet.train import build as build_run

    images = make_images(tmp_path / "photos", n=8)
    cfg = compose([*tiny_overrides(tmp_path, images, steps=steps), *speed_overrides, "checkpoint.every_n_train_steps=0"])
    trainer, module, datamodule = build_run(cfg, tmp_path / "run")
    trainer.fit(module, datamodule=datamodule)
    return trainer, module


def test_fast_reaches_the_reference_loss(tmp_path):
    """Same seed, same steps: the final total loss of `fast` within 2% (5% where `auto` picks bf16)."""
    eval_batch = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    finals = {}
    for name in ("reference", "fast"):
        # plain crops: zoomed, mirrored 32 px crops make 30 steps too noisy to compare two numerics
        trainer, module = _train(tmp_path / name, [f"speed={name}", "data.augment.scale=null", "data.augment.hflip=0"], steps=30)
        assert trainer.global_step == 30
        module.eval()
        with torch.no_grad():
            finals[name] = module.compute_losses(eval_batch)["loss"].item()
    # fp32 paths agree to 2 %; under bf16 autocast (AMX CPUs, GPUs) every activation keeps 8 bits of
    # mantissa and 30 Adam steps of a tiny network amplify that: 2.6 % measured on the AMX CPU
    bf16 = resolve_speed(FAST, "cpu")["autocast"]
    assert abs(finals["fast"] - finals["reference"]) / finals["reference"] < (0.05 if bf16 else 0.02), finals


def test_compile_failure_warns_and_training_runs(tmp_path):
    from torch._dynamo import list_backends, register_backend

    if "stylenet_test_broken" not in list_backends(exclude_tags=()):
        @register_backend(name="stylenet_test_broken")
        def _broken(graph_module, example_inputs):
            raise RuntimeError("this compiler is broken on purpose")

    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        trainer, module = _train(tmp_path, ["speed.compile=true", "speed.compile_backend=stylenet_test_broken"], steps=2)
    assert trainer.global_step == 2
    assert not module.step_plan.compiled and module.step_plan.transformer is module.transformer


# -- data: the pre-resize cache --------------------------------------------------------------------------
def _cfg(**kw):
    from omegaconf import OmegaConf

    base = yaml.safe_load((CONFIGS / "data" / "folder.yaml").read_text())
    base.update(image_size=32, batch_size=2, num_workers=0, **kw)
    return OmegaConf.create(base)


def test_preresize_folder_cache(tmp_path):
    from PIL import Image

    from stylenet.data import DataError, StyleDataModule

    photos = make_images(tmp_path / "photos", n=4, size=(120, 90))
    cache = tmp_path / "cache"
    dm = StyleDataModule(_cfg(path=str(photos), preresize=48, preresize_cache=str(cache)))
    dm.setup("fit")
    files = dm.train_set.files
    assert all(cache in f.parents for f in files)
    assert all(min(Image.open(f).size) == 48 for f in files)
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = StyleDataModule(_cfg(path=str(photos), preresize=48, preresize_cache=str(cache)))
    again.setup("fit")
    assert [f.stat().st_mtime_ns for f in again.train_set.files] == mtimes  # built once, reused
    assert next(iter(again.train_dataloader())).shape == (2, 3, 32, 32)
    with pytest.raises(DataError, match="preresize"):
        StyleDataModule(_cfg(path=str(photos), preresize=16)).setup("fit")


def test_preresize_hub_dataset(tmp_path):
    import io

    datasets = pytest.importorskip("datasets")
    from PIL import Image

    from stylenet.data import HubImages
    from stylenet.preresize import preresize_hub

    def jpeg(w, h):
        buf = io.BytesIO()
        Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "JPEG")
        return {"bytes": buf.getvalue(), "path": None}

    ds = datasets.Dataset.from_dict({"image": [jpeg(120, 90), jpeg(40, 60), {"bytes": b"not an image", "path": None}]})
    ds = ds.cast_column("image", datasets.Image(decode=False))
    small = preresize_hub(ds, "image", 48, workers=1)
    sizes = [Image.open(io.BytesIO(item["bytes"])).size for item in small.select([0, 1])["image"]]
    assert sizes == [(64, 48), (40, 60)]  # the small one stays as it is
    assert small[2]["image"]["bytes"] == b"not an image"  # left for the loader to warn about and skip
    assert HubImages(small, "image", None)._load(0).size == (64, 48)


# -- the benchmarks -------------------------------------------------------------------------------------
def _benchmark(argv: list[str], capsys) -> list[str]:
    assert load_script("benchmark").main(argv) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_train_benchmark_cli(capsys):
    lines = _benchmark(["mode=train", "batch_sizes=[1]", "steps=2", "warmup=1", "size=64", "model=slim",
                        "network=squeezenet1_1"], capsys)
    out = "\n".join(lines)
    assert re.fullmatch(r"fast/reference images/s ratio at batch 1: \d+\.\d\d", lines[-1]), out
    assert "GFLOP" in out and "n/a (no GPU)" in out
    rows = [line.split() for line in lines if re.match(r"(reference|fast)\s+1\s", line)]
    assert len(rows) == 2 and all(float(r[2]) > 0 and float(r[6]) > 0 for r in rows), out  # images/s, peak MiB


def test_data_benchmark_cli(tmp_path, capsys):
    photos = make_images(tmp_path / "photos", n=8, size=(96, 72))
    lines = _benchmark(["mode=data", f"path={photos}", "workers=[0]", "images=8", "batch_size=4", "size=32",
                        "preresize=[null,48]"], capsys)
    rows = [line.split() for line in lines if re.match(r"\s*(off|48)\s+0\s", line)]
    assert len(rows) == 2 and all(float(r[3]) > 0 for r in rows), lines


def test_training_step_imports_without_hydra_omegaconf_datasets_wandb():
    """The objective and how a step runs (what the train benchmark times) need only torch,
    torchvision and Lightning; configs are the commands' business."""
    code = (
        "import sys\n"
        "for name in ('hydra', 'omegaconf', 'datasets', 'wandb'):\n"
        "    sys.modules[name] = None\n"
        "import stylenet.module, stylenet.lossnet, stylenet.speed\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_multi_gpu_recipes_compose():
    for trainer in ("ddp", "slurm"):
        cfg = compose([f"trainer={trainer}", f"style.image={HOKUSAI}"])
        assert cfg.trainer.strategy == "ddp"
    cfg = compose(["trainer=slurm", "trainer.num_nodes=4", "trainer.devices=8"])
    assert cfg.trainer.num_nodes == 4 and cfg.trainer.devices == 8
