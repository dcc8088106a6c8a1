"""Temporal consistency: DIS flow and warping, Lai et al.'s warping error, the inference
stabiliser, and the training stability term (moved copies, temporal_loss, the module's term)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stylenet.losses import temporal_loss
from stylenet.module import StyleTransferModule
from stylenet.stability import move, moved_copy, random_motion
from stylenet.temporal import Flow, FlowCache, Stabilizer, consistent, gray, warp, warping_error

from .conftest import SQUEEZENET


def texture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth random BGR texture (DIS needs gradients; pure noise aliases)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def pan(frames: int, dx: int = 2, dy: int = 1) -> list[np.ndarray]:
    """A camera pan over a larger texture: frame t is the window shifted by t·(dx, dy)."""
    big = texture(96 + frames * dy + 8, 128 + frames * dx + 8)
    return [big[4 + t * dy: 4 + t * dy + 96, 4 + t * dx: 4 + t * dx + 128].copy() for t in range(frames)]


def test_dis_flow_finds_a_known_shift_and_warp_undoes_it():
    a, b = pan(2, dx=3, dy=2)
    flow = Flow("medium")(gray(b), gray(a))  # b(x) ≈ a(x + f(x)): the window moved right/down, so f ≈ (+3, +2)
    centre = flow[16:-16, 16:-16]
    assert np.allclose(np.median(centre[..., 0]), 3, atol=0.3) and np.allclose(np.median(centre[..., 1]), 2, atol=0.3)
    back = warp(a.astype(np.float32), flow)
    assert np.abs(back[16:-16, 16:-16] - b[16:-16, 16:-16]).mean() < 4  # grey levels
    assert consistent(flow, Flow("medium")(gray(a), gray(b)))[16:-16, 16:-16].mean() > 0.95


def test_warping_error_floor_zero_for_consistent_paint_and_large_for_flicker():
    frames = pan(5)
    flows = FlowCache(frames)
    floor = warping_error(frames, flows)
    rng = np.random.default_rng(1)
    flicker = [np.clip(f.astype(np.int16) + rng.integers(-40, 41, f.shape), 0, 255).astype(np.uint8) for f in frames]
    assert floor < 2e-3
    assert warping_error(flicker, flows) > 10 * floor
    static = FlowCache([frames[0]] * 3)
    assert warping_error([frames[0]] * 3, static) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="4 output frames for a clip of 5"):
        warping_error(frames[:4], flows)


def test_stabilizer_removes_flicker_on_a_moving_scene_and_keeps_the_first_frame():
    frames = pan(8)
    rng = np.random.default_rng(2)
    stylized = [np.clip(f.astype(np.int16) + rng.integers(-30, 31, f.shape), 0, 255).astype(np.uint8) for f in frames]
    stabilizer = Stabilizer(blend=0.8)
    stable = [stabilizer(f, s) for f, s in zip(frames, stylized)]
    assert np.array_equal(stable[0], stylized[0]) and stable[3].dtype == np.uint8 and stable[3].shape == frames[3].shape
    flows = FlowCache(frames)
    assert warping_error(stable, flows) < 0.5 * warping_error(stylized, flows)
    stabilizer.reset()
    assert np.array_equal(stabilizer(frames[5], stylized[5]), stylized[5])
    with pytest.raises(ValueError, match="blend"):
        Stabilizer(blend=1.0)
    from_yaml = Stabilizer.from_config({"blend": 0.5, "sigma": 3, "preset": "fast"})
    assert (from_yaml.blend, from_yaml.sigma) == (0.5, 3.0)
    with pytest.raises(ValueError, match="unknown flow preset"):
        Stabilizer.from_config({"blend": 0.5, "sigma": 3, "preset": "slowest"})


def test_a_scene_cut_is_painted_fresh():
    """Where the warped previous input does not match (a cut), nothing of the old output is kept."""
    a, b = texture(seed=3), texture(seed=4)
    stabilizer = Stabilizer(blend=0.9, sigma=5.0)
    stabilizer(a, np.zeros_like(a))
    out = stabilizer(b, np.full_like(b, 200))
    assert np.median(out) >= 190


def test_moves_shift_rotate_and_mask():
    images = torch.rand(2, 3, 16, 24)
    identity = random_motion(2, 16, 24, shift=0, rotate=0, zoom=0)
    moved, inside = move(images, identity)
    assert torch.allclose(moved, images, atol=1e-5) and bool(inside.all())
    # a 2-pixel shift to the right of the sampling grid = the image moved 2 pixels left
    theta = torch.tensor([[[1.0, 0.0, 2 * 2 / 24], [0.0, 1.0, 0.0]]]).expand(2, 2, 3)
    moved, inside = move(images, theta)
    assert torch.allclose(moved[..., :-2], images[..., 2:], atol=1e-5)
    assert not bool(inside[..., -1].any()) and bool(inside[..., :-2].all())
    g = torch.Generator().manual_seed(0)
    theta = random_motion(64, 16, 24, shift=4, rotate=1, zoom=0.02, generator=g)
    # ≤ 4 px: normalised units × W/2 in x, × H/2 in y
    assert theta[:, 0, 2].abs().max() * 12 <= 4 + 1e-4 and theta[:, 1, 2].abs().max() * 8 <= 4 + 1e-4
    assert theta[:, 0, 2].abs().max() * 12 > 3
    rotation = torch.atan2(theta[:, 1, 0] * 16 / 24, theta[:, 0, 0]).abs().max()
    assert rotation <= math.radians(1) + 1e-5 and rotation > math.radians(0.5)
    noisy, _, _ = moved_copy(images, {"shift": 0, "rotate": 0, "zoom": 0, "noise": 0.1}, generator=g)
    assert 0.03 < float((noisy - images).std()) < 0.12 and noisy.min() >= 0 and noisy.max() <= 1


def test_temporal_loss_counts_only_masked_pixels():
    a, b = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    b[..., 0] = 1.0
    mask = torch.ones(1, 1, 4, 4)
    assert float(temporal_loss(a, a, mask)) == 0.0
    assert float(temporal_loss(a, b, mask)) == pytest.approx(0.25)
    mask[..., 0] = 0
    assert float(temporal_loss(a, b, mask)) == 0.0


def test_module_adds_the_weighted_stability_term():
    torch.manual_seed(0)
    loss = {"network": "squeezenet1_1", "weights": str(SQUEEZENET), "content_layer": "fire3",
            "style_layers": {"relu1": 1.0, "fire2": 1.0}, "content_weight": 1.0, "style_weight": 1.0, "tv_weight": 1.0,
            "normalize": True, "temporal_weight": 50.0, "temporal": {"shift": 3, "rotate": 1, "zoom": 0.02, "noise": 0.02}}
    module = StyleTransferModule(model={"width": 8, "num_residual": 1}, loss=loss, optim={"lr": 1e-3},
                                 style_image=torch.rand(1, 3, 32, 32), batch_size=2, image_size=32)
    terms = module.compute_losses(torch.rand(2, 3, 32, 32))
    assert float(terms["temporal"].detach()) > 0
    assert float(terms["loss"]) == pytest.approx(float(terms["content"] + terms["style"] + terms["tv"] + terms["temporal"]), rel=1e-5)
    terms["temporal"].backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.transformer.parameters())
    off = StyleTransferModule(model={"width": 8, "num_residual": 1}, loss={**loss, "temporal_weight": 0.0}, optim={"lr": 1e-3},
                              style_image=torch.rand(1, 3, 32, 32), batch_size=2, image_size=32)
    assert "temporal" not in off.compute_losses(torch.rand(2, 3, 32, 32))


def test_generated_clips_move_as_declared():
    from stylenet.bench.clips import make_clip

    photo = texture(240, 320, seed=5)
    frames = make_clip(photo, "pan", frames=3, size=(96, 64), moving_object=False)
    assert [f.shape for f in frames] == [(64, 96, 3)] * 3 and frames[0].dtype == np.uint8
    # the camera pans right by 0.12 of the width over the clip: frame 1 = frame 0 shifted by 0.06 × 96 px
    flow = Flow("medium")(gray(frames[1]), gray(frames[0]))
    assert np.median(flow[8:-8, 8:-8, 0]) == pytest.approx(0.06 * 96, abs=0.5)
    with_disc = make_clip(photo, "rotate", frames=3, size=(96, 64))
    assert not np.array_equal(with_disc[0], make_clip(photo, "rotate", frames=3, size=(96, 64), moving_object=False)[0])
    with pytest.raises(ValueError, match="unknown motion"):
        make_clip(photo, "shake")


def test_video_benchmark_table_and_ratio_line(export_path, tmp_path, capsys):
    from stylenet.bench import video

    from .conftest import CHICAGO, HOKUSAI, TOOLS, compose

    cfg = compose(["mode=video",
                   f"model={export_path}", f"stable={export_path}", f"photos={CHICAGO.parent}", "max_clips=1", "motions=[pan]",
                   "frames=4", "size=[48,32]", "objective_size=32", f"style={HOKUSAI}", "style_size=48",
                   f"gif={tmp_path / 'side.gif'}", f"save_clips={tmp_path / 'clips'}"], config_name="benchmark", config_dir=TOOLS)
    summary = video.run(cfg)
    lines = capsys.readouterr().out.strip().splitlines()
    methods = [r["method"] for r in summary]
    assert methods == ["input (floor)", "per-frame", "stable (trained)", "stabilised (inference)"]
    by = {r["method"]: r for r in summary}
    assert by["stable (trained)"]["error"] == pytest.approx(by["per-frame"]["error"])  # the same network twice
    assert by["per-frame"]["objective"] == pytest.approx(by["stable (trained)"]["objective"]) and by["per-frame"]["objective"] > 0
    assert lines[-1] == "stable/per-frame warping error ratio: 1.000"
    assert (tmp_path / "side.gif").stat().st_size > 0 and len(list((tmp_path / "clips").glob("*.mp4"))) == 1
