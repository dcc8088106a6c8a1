"""Distillation (`distill.teacher=`): a network trained to also imitate a trained network's
outputs (model=realtime taught by the full network, docs/inference.md)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stylenet.commands import train as train_command
from stylenet.module import StyleTransferModule
from stylenet.transformer import TransformerNet

from .conftest import SQUEEZENET, make_images, tiny_overrides

LOSS = {"network": "squeezenet1_1", "weights": str(SQUEEZENET), "content_layer": "fire3",
        "style_layers": {"relu1": 1.0, "fire2": 1.0}, "content_weight": 1.0, "style_weight": 1.0, "tv_weight": 1.0,
        "normalize": True}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_distill_term_is_the_weighted_pixel_mse_to_the_teacher():
    """compute_losses adds weight × MSE(output, teacher(output's photos)) to the objective; the
    teacher gets no gradient, stays in eval mode through module.train(), and stays out of
    checkpoints (like the loss network)."""
    torch.manual_seed(0)
    teacher = TransformerNet(width=8, num_residual=1)
    module = StyleTransferModule(model={"width": 4, "num_residual": 1, "kernel": 3}, loss=LOSS, optim={"lr": 1e-3},
                                 style_image=torch.rand(1, 3, 32, 32), teacher=teacher,
                                 distill={"teacher": "t.safetensors", "weight": 7.0})
    module.train()
    assert not module.teacher.training and not any(p.requires_grad for p in module.teacher.parameters())
    batch = torch.rand(2, 3, 32, 32)
    terms = module.compute_losses(batch)
    with torch.no_grad():
        expected = 7.0 * F.mse_loss(module.transformer(batch), teacher(batch))
    assert torch.allclose(terms["distill"], expected, rtol=1e-5)
    assert torch.allclose(terms["loss"], terms["content"] + terms["style"] + terms["tv"] + terms["distill"])
    terms["loss"].backward()
    assert all(p.grad is None for p in module.teacher.parameters())
    assert module.transformer.encoder[0][1].weight.grad is not None
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert not any(k.startswith(("teacher.", "lossnet.")) for k in checkpoint["state_dict"])
    assert module.hparams.distill == {"teacher": "t.safetensors", "weight": 7.0}
    module.on_load_checkpoint(checkpoint)  # a resumed run gets its teacher back from the run's config
    module.load_state_dict(checkpoint["state_dict"])
    plain = StyleTransferModule(model={"width": 4, "num_residual": 1, "kernel": 3}, loss=LOSS, optim={"lr": 1e-3},
                                style_image=torch.rand(1, 3, 32, 32))
    assert "distill" not in plain.compute_losses(batch) and "distill" not in plain.hparams


@pytest.mark.slow
def test_cli_distills_from_an_export_and_refuses_a_teacher_of_another_style(tmp_path, export_path, capsys):
    """train.py ... distill.teacher=EXPORT trains (the distill term logged, the teacher recorded,
    not saved); a teacher of another style is one error: line and exit code 2."""
    photos = make_images(tmp_path / "photos", n=4)
    args = [*tiny_overrides(tmp_path, photos, steps=2), f"hydra.run.dir={tmp_path / 'run'}", "logger=csv",
            "trainer.log_every_n_steps=1", f"distill.teacher={export_path}", "distill.weight=3"]
    assert train_command.main(args) == 0
    out = capsys.readouterr().out
    assert f"distilling {export_path}" in out
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["distill"] == {"teacher": str(export_path), "weight": 3}
    assert not any(k.startswith("teacher.") for k in ckpt["state_dict"])
    header = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/distill" in header
    other = [a for a in args if not a.startswith("checkpoint_dir=")] + [f"checkpoint_dir={tmp_path / 'other'}", "style.name=waves"]
    assert train_command.main(other) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "holds hokusai, this run trains waves" in err and "Traceback" not in err
