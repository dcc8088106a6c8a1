"""The virtual camera (webcam virtual_cam=true): frames in pyvirtualcam's format, size and rate;
no pyvirtualcam or no backend is one `error:` line naming what to install, exit code 2."""

import os
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from stylenet.video import run_live
from stylenet.virtualcam import VirtualCameraError, backend_hint, fit, require

from .conftest import ROOT, SUBPROCESS_ENV, load_script
from .test_video import FPS, H, W, make_video

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("vcam") / "clip.mp4", frames=8)


@pytest.fixture
def pyvirtualcam():
    try:
        return require()
    except VirtualCameraError:
        if os.environ.get("CI") == "true":
            pytest.fail("pyvirtualcam is missing: the dev extra installs it (pip install -e '.[dev]')")
        pytest.skip("pyvirtualcam is not installed (pip install pyvirtualcam)")


class FakeCamera:
    """pyvirtualcam.Camera as the backend sees it: the size, rate and format it was opened
    with, and every frame sent (copied)."""

    opened: list = []

    def __init__(self, width, height, fps, *, fmt, **kwargs):
        self.width, self.height, self.fps, self.fmt, self.frames, self.closed = width, height, fps, fmt, [], False
        FakeCamera.opened.append(self)

    device, backend = "/dev/video9", "fake"

    def send(self, frame):
        assert frame.shape == (self.height, self.width, 3)  # pyvirtualcam's own check for RGB
        self.frames.append(frame.copy())

    def close(self):
        self.closed = True


def decoded_frames(path, n):
    cap, frames = cv2.VideoCapture(str(path)), []
    while len(frames) < n and (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    return frames


def test_the_command_sends_rgb_frames_of_the_camera_size_and_rate(pyvirtualcam, monkeypatch, stylizer, export_path, clip,
                                                                 tmp_path, capsys):
    FakeCamera.opened = []
    monkeypatch.setattr(pyvirtualcam, "Camera", FakeCamera)
    webcam = load_script("webcam")
    assert webcam.main([f"model={export_path}", f"source={clip}", "headless=true", "virtual_cam=true", "realtime=false",
                        "max_frames=5", "device=cpu"]) == 0
    out = capsys.readouterr().out
    assert f"virtual camera: /dev/video9 (fake), {W}x{H} at {FPS:g} fps" in out and "frames: 5" in out
    (cam,) = FakeCamera.opened
    assert (cam.width, cam.height, cam.fps, cam.fmt) == (W, H, FPS, pyvirtualcam.PixelFormat.RGB) and cam.closed
    assert len(cam.frames) == 5
    for sent, frame in zip(cam.frames, decoded_frames(clip, 5)):
        assert sent.dtype == np.uint8 and sent.shape == (H, W, 3) and sent.flags["C_CONTIGUOUS"]
        want_rgb = stylizer.stylize(frame, bgr=True)[..., ::-1]  # the stylized frame, RGB, without the overlay
        assert np.abs(sent.astype(int) - want_rgb).max() <= 1
        assert np.abs(sent.astype(int) - frame[..., ::-1]).mean() > 5  # not the camera's picture


def test_side_by_side_is_fitted_into_the_camera(pyvirtualcam, monkeypatch, stylizer, clip):
    FakeCamera.opened = []
    monkeypatch.setattr(pyvirtualcam, "Camera", FakeCamera)
    stats = run_live([stylizer], str(clip), headless=True, side_by_side=True, virtual_cam=True, realtime=False, max_frames=2,
                     log=lambda s: None)
    (cam,) = FakeCamera.opened
    assert stats.frames == 2 and len(cam.frames) == 2 and (cam.width, cam.height) == (W, H)
    sent = cam.frames[0]  # (2W x H) view at half size: black bars above and below
    assert sent.shape == (H, W, 3) and not sent[:H // 4 - 1].any() and not sent[-(H // 4 - 1):].any()
    assert sent[H // 4 + 1:-(H // 4 + 1)].mean() > 20


def test_fit_keeps_the_aspect():
    image = np.full((10, 40, 3), 200, np.uint8)
    out = fit(image, (20, 20))
    assert out.shape == (20, 20, 3) and (out[8:12] == 200).all() and not out[:7].any() and not out[13:].any()
    assert fit(image, (40, 10)) is image


def test_backend_hint_names_what_to_install_on_each_os():
    linux = backend_hint("linux")
    assert "apt install v4l2loopback-dkms" in linux and "modprobe v4l2loopback devices=1 exclusive_caps=1" in linux
    assert "OBS Studio 26" in backend_hint("win32") and "Unity Capture" in backend_hint("win32")
    assert "OBS Studio 26" in backend_hint("darwin") and "start its virtual camera once" in backend_hint("darwin")


def run_cli(args, tmp_path, **env):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "webcam.py"), *args], capture_output=True, text=True,
                          cwd=tmp_path, env={**SUBPROCESS_ENV, **env}, timeout=120)


def test_no_backend_is_one_error_line(pyvirtualcam, export_path, clip, tmp_path):
    try:
        pyvirtualcam.Camera(W, H, FPS).close()
        pytest.skip("this machine has a virtual camera backend: the no-backend error cannot happen here")
    except RuntimeError:
        pass
    run = run_cli([f"model={export_path}", f"source={clip}", "headless=true", "virtual_cam=true", "device=cpu"], tmp_path)
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("error: no virtual camera to send to (pyvirtualcam: ")
    assert line.endswith("or run without virtual_cam=true")
    assert backend_hint() in line  # this OS's fix (here: load v4l2loopback)
    assert "frames:" not in run.stdout  # stopped before the first frame


def test_without_pyvirtualcam_the_error_says_pip_install(export_path, clip, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pyvirtualcam.py").write_text("raise ModuleNotFoundError(\"No module named 'pyvirtualcam'\", name='pyvirtualcam')\n")
    run = run_cli([f"model={export_path}", f"source={clip}", "headless=true", "virtual_cam=true", "device=cpu"], tmp_path,
                  PYTHONPATH=str(shim))
    assert run.returncode == 2
    assert run.stderr.splitlines() == ['error: virtual_cam=true needs pyvirtualcam: pip install pyvirtualcam '
                                       '(or pip install -e ".[virtualcam]")']
    assert "styles:" not in run.stdout  # before the models load


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="Windows and macOS always have a display")
def test_virtual_camera_without_headless_still_needs_a_display(export_path, clip, monkeypatch, capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert load_script("webcam").main([f"model={export_path}", f"source={clip}", "virtual_cam=true"]) == 2
    assert "headless=true virtual_cam=true" in capsys.readouterr().err


def test_only_send_and_close_are_used(monkeypatch):
    """Of pyvirtualcam's Camera the loop needs `send` and `close` (it sets the pace itself)."""
    calls = []
    camera = SimpleNamespace(send=lambda f: calls.append(f.shape), close=lambda: calls.append("close"))
    fake = SimpleNamespace(Camera=lambda **kw: camera, PixelFormat=SimpleNamespace(RGB="rgb"))
    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake)
    from stylenet.virtualcam import VirtualCamera

    with VirtualCamera(8, 6, 30) as cam:
        cam.send(np.zeros((6, 8, 3), np.uint8))
    assert calls == [(6, 8, 3), "close"] and cam.device == "virtual camera"
