"""Video files and the live loop: frame count, size and fps kept; late frames dropped; clear errors."""

import re
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from stylenet.temporal import Stabilizer
from stylenet.capture import CameraError, LatestFrame
from stylenet.video import run_live
from stylenet.videofile import FrameWriter, VideoError, stylize_video
from stylenet.window import LiveState, compose_view, handle_key

from .conftest import ROOT, SUBPROCESS_ENV, load_script

W, H, FPS = 64, 48, 15.0


pytestmark = pytest.mark.usefixtures("one_thread")


def make_video(path: Path, frames: int = 12, fps: float = FPS, size=(W, H)) -> Path:
    """A moving bar on a gradient: every frame different, decodable everywhere."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[..., 0] = np.linspace(0, 255, size[0], dtype=np.uint8)[None]
        frame[:, (4 * i) % size[0]:(4 * i) % size[0] + 6, 1] = 255
        writer.write(frame)
    writer.release()
    return path


def probe(path: Path) -> tuple[int, float, int, int]:
    """(frames actually decodable, fps, width, height)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    info = (n, cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    return info


def make_video_with_audio(path: Path, frames: int = 10, fps: int = 10, size=(65, 49), audio_codec: str = "aac") -> Path:
    """A video with a 440 Hz tone (PyAV): what a phone clip has and OpenCV's writer lost."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = size[0] + size[0] % 2, size[1] + size[1] % 2, "yuv420p"
        audio = out.add_stream(audio_codec, rate=16000)
        audio.layout = "mono"
        for i in range(frames):
            frame = np.zeros((video.height, video.width, 3), np.uint8)
            frame[:, (5 * i) % video.width:(5 * i) % video.width + 8] = (0, 200, 255)
            vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for packet in video.encode(vf):
                out.mux(packet)
        samples = 16000 * frames // fps
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)).astype(np.float32)[None]
        chunk = audio.codec_context.frame_size or 1024
        fmt = audio.codec_context.format.name
        for start in range(0, samples, chunk):
            part = tone[:, start:start + chunk]
            data = {"s16": (part * 32767).astype(np.int16), "s32": (part * 2**31 * 0.99).astype(np.int32)}.get(fmt[:3], part)
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout="mono")
            af.sample_rate, af.pts = 16000, start
            for packet in audio.encode(af):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                out.mux(packet)
    return path


def streams(path: Path) -> dict:
    """{"video": (codec, w, h, frames, fps), "audio": (codec, seconds) or None} as FFmpeg reads it back."""
    import av

    with av.open(str(path)) as f:
        v = f.streams.video[0]
        video = [v.codec_context.name, v.codec_context.width, v.codec_context.height, 0, float(v.average_rate)]
        video[3] = sum(1 for _ in f.decode(v))
    with av.open(str(path)) as f:
        a = f.streams.audio[0] if f.streams.audio else None
        audio = None
        if a is not None:
            samples = sum(frame.samples for frame in f.decode(a))
            codec = a.codec_context.codec
            audio = (getattr(codec, "canonical_name", None) or codec.name, samples / a.codec_context.sample_rate)
    return {"video": tuple(video), "audio": audio}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def test_stylize_video_keeps_frames_size_and_fps(stylizer, clip, tmp_path):
    out = tmp_path / "styled.mp4"
    stats = stylize_video(stylizer, clip, out, batch_size=5, progress=False)
    assert (stats.frames, stats.size, stats.fps) == (12, (W, H), FPS)
    frames, fps, w, h = probe(out)
    assert (frames, fps, w, h) == (12, FPS, W, H)
    assert [p.name for p in tmp_path.iterdir()] == ["styled.mp4"]  # temp file renamed into place
    cap = cv2.VideoCapture(str(out))
    got = cap.read()[1].astype(float)
    first = cv2.VideoCapture(str(clip)).read()[1]
    want = stylizer.stylize(first, bgr=True).astype(float)
    assert np.abs(got - want).mean() < 12 < np.abs(got - first).mean()  # it is the stylized frame (lossy codec)


def test_video_errors(stylizer, tmp_path, clip):
    with pytest.raises(VideoError, match="video not found"):
        stylize_video(stylizer, tmp_path / "none.mp4", tmp_path / "o.mp4", progress=False)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("hello")
    with pytest.raises(VideoError, match="cannot read video"):
        stylize_video(stylizer, not_video, tmp_path / "o.mp4", progress=False)
    with pytest.raises(VideoError, match="cannot write .png videos; use one of .mp4"):
        stylize_video(stylizer, clip, tmp_path / "o.png", progress=False)
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize(("suffix", "audio_codec", "want_video", "want_audio"), [
    (".mp4", "aac", "h264", "aac"),            # H.264, the AAC track copied
    (".mkv", "libmp3lame", "h264", "mp3"),     # Matroska copies any codec
    (".webm", "aac", "vp9", "opus"),           # WebM takes no AAC: re-encoded to Opus
])
def test_video_round_trip_keeps_audio_odd_size_and_rate(stylizer, tmp_path, suffix, audio_codec, want_video, want_audio):
    src = make_video_with_audio(tmp_path / "phone.mkv", audio_codec=audio_codec)
    before = streams(src)
    out = tmp_path / f"styled{suffix}"
    stats = stylize_video(stylizer, src, out, batch_size=3, progress=False)
    after = streams(out)
    assert after["video"] == (want_video, 66, 50, 10, 10.0) == (want_video, *before["video"][1:])
    assert stats.size == (66, 50) and stats.frames == 10
    assert after["audio"][0] == want_audio and after["audio"][1] == pytest.approx(before["audio"][1], abs=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["phone.mkv", out.name])  # no temp file left


def test_odd_frame_sizes_are_kept_exactly(tmp_path):
    out = tmp_path / "odd.mp4"
    with FrameWriter(out, 12.5, (33, 21)) as writer:
        for i in range(5):
            writer.write(np.full((21, 33, 3), 40 * i, np.uint8))
    assert streams(out)["video"] == ("h264", 33, 21, 5, 12.5)
    assert probe(out)[2:] == (33, 21)  # OpenCV reads the exact size too


def test_interrupted_video_leaves_no_partial_file(stylizer, clip, tmp_path):
    class Boom(Exception):
        pass

    def stabilizer(frame, out):
        stabilizer.calls += 1
        if stabilizer.calls == 7:
            raise Boom
        return out

    stabilizer.calls = 0
    with pytest.raises(Boom):
        stylize_video(stylizer, clip, tmp_path / "styled.mp4", batch_size=2, progress=False, stabilizer=stabilizer)
    assert list(tmp_path.iterdir()) == []


def test_stabilised_video_flickers_less(stylizer, tmp_path):
    from stylenet.temporal import FlowCache, warping_error

    src = make_video(tmp_path / "pan.mp4", frames=10)
    plain, stable = tmp_path / "plain.mp4", tmp_path / "stable.mp4"
    stylize_video(stylizer, src, plain, progress=False)
    stylize_video(stylizer, src, stable, progress=False, stabilizer=Stabilizer(blend=0.8))
    inputs, a, b = (read_all(p) for p in (src, plain, stable))
    flows = FlowCache(inputs)
    assert warping_error(b, flows) < warping_error(a, flows)
    assert np.array_equal(a[0].shape, b[0].shape)


def read_all(path: Path) -> list:
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


class FakeCamera:
    """A 'camera' delivering numbered frames as fast as asked: frame[0,0,0] is its number."""

    def __init__(self, n: int):
        self.n, self.i = n, 0

    def read(self):
        if self.i >= self.n:
            return False, None
        self.i += 1
        time.sleep(0.002)
        return True, np.full((4, 4, 3), self.i % 256, np.uint8)


def test_capture_thread_drops_late_frames_never_queues():
    grabber = LatestFrame(FakeCamera(60)).start()
    got = []
    while (frame := grabber.get(timeout=5)) is not None:
        got.append(int(frame[0, 0, 0]))
        time.sleep(0.02)  # inference slower than the camera
    grabber.stop()
    assert grabber.captured == 60 and got[-1] == 60  # the newest frame is never lost
    assert got == sorted(got) and len(got) < 30  # in order, most frames skipped...
    assert grabber.dropped == 60 - len(got)  # ...and every capture is either shown or dropped


def test_keys_switch_style_toggle_views_snapshot_and_quit():
    state = LiveState()
    assert handle_key(ord("n"), state, 3).index == 1
    assert handle_key(ord("n"), state, 3).index == 2
    assert handle_key(ord("n"), state, 3).index == 0
    assert handle_key(ord("p"), state, 3).index == 2
    assert handle_key(ord("1"), state, 3).index == 0 and handle_key(ord("9"), state, 3).index == 0
    assert handle_key(ord("o"), state, 3).side_by_side and not handle_key(ord("o"), state, 3).side_by_side
    assert handle_key(ord("c"), state, 3).preserve_color
    assert handle_key(ord("s"), state, 3).snapshot
    assert not handle_key(-1, state, 3).quit
    assert handle_key(27, LiveState(), 3).quit and handle_key(ord("Q"), LiveState(), 3).quit
    frame = np.zeros((4, 6, 3), np.uint8)
    assert compose_view(frame, frame + 1, True).shape == (4, 12, 3)


def test_live_loop_headless_writes_n_frames(stylizer, clip, tmp_path):
    out = tmp_path / "live.avi"
    stats = run_live([stylizer, stylizer], str(clip), headless=True, output=out, max_frames=4, side_by_side=True,
                     realtime=False, log=lambda s: None)
    assert stats.frames == 4 and stats.fps > 0 and stats.output == out
    frames, fps, w, h = probe(out)
    assert (frames, fps, w, h) == (4, FPS, 2 * W, H)
    every = run_live([stylizer], str(clip), headless=True, realtime=False, log=lambda s: None)
    assert (every.frames, every.dropped, every.output) == (12, 0, None)  # not realtime: no frame skipped


def test_live_loop_stabilizes_every_frame_and_flickers_less(stylizer, clip, tmp_path):
    from stylenet.temporal import FlowCache, warping_error

    seen = []

    class Recording(Stabilizer):
        def __call__(self, frame, stylized):
            out = super().__call__(frame, stylized)
            seen.append((frame.copy(), stylized.copy(), out.copy()))
            return out

    stats = run_live([stylizer], str(clip), headless=True, realtime=False, overlay=False, stabilizer=Recording(blend=0.8),
                     log=lambda s: None)
    assert stats.frames == len(seen) == 12
    inputs, raw, stable = (list(x) for x in zip(*seen))
    assert np.array_equal(stable[0], raw[0]) and not np.array_equal(stable[5], raw[5])
    flows = FlowCache(inputs)
    assert warping_error(stable, flows) < warping_error(raw, flows)


def test_no_camera_is_a_clear_error():
    with pytest.raises(CameraError, match="no camera at index 99 .*source=VIDEO_FILE"):
        run_live([object()], 99, headless=True)


def test_writer_rejects_sizes_it_was_not_opened_for(tmp_path):
    with FrameWriter(tmp_path / "a.mp4", 10, (W, H)) as writer:
        with pytest.raises(VideoError, match="frame size 32x32 differs"):
            writer.write(np.zeros((32, 32, 3), np.uint8))
        writer.write(np.zeros((H, W, 3), np.uint8))
    assert probe(tmp_path / "a.mp4")[0] == 1


def test_webcam_cli_errors(capsys, export_path):
    webcam = load_script("webcam")
    assert webcam.main([f"model={export_path}", "source=99", "headless=true"]) == 2
    assert "error: no camera at index 99" in capsys.readouterr().err
    assert webcam.main([f"model={export_path}", "output=x.mp4"]) == 2
    assert "output= is written only with headless=true" in capsys.readouterr().err
    assert webcam.main(["model=nonexistent_style", "headless=true"]) == 2
    assert "error: no model file or preset named 'nonexistent_style'" in capsys.readouterr().err
    assert webcam.main([f"model={export_path}", "headless=true", "backend=onnxruntime", "precision=bf16"]) == 2
    assert capsys.readouterr().err.strip() == ("error: backend=onnxruntime runs fp32, not bf16: use precision=fp32, "
                                               "or backend=torch")


def test_webcam_runs_the_network_in_onnx_runtime(capsys, export_path, tmp_path, one_thread):
    clip = make_video(tmp_path / "cam.mp4", frames=8)
    webcam = load_script("webcam")
    assert webcam.main([f"model={export_path}", f"source={clip}", "headless=true", f"output={tmp_path / 'live.mp4'}",
                        "realtime=false", "backend=onnxruntime", "precision=fp32"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [f"model: {export_path}", "network: ONNX Runtime, fp32, cpu"] and "frames: 8" in out
    assert probe(tmp_path / "live.mp4") == (8, FPS, W, H)


def test_frame_loops_keep_host_memory_unless_told_not_to(monkeypatch, export_path, tmp_path, one_thread):
    """The webcam and video stylization tell glibc to keep freed memory (stylenet.allocator:
    each frame reuses the last one's blocks); keep_host_memory=false leaves malloc alone."""
    calls = []
    monkeypatch.setattr("stylenet.allocator.keep_freed_memory", lambda on=True: calls.append(on) or True)
    clip = make_video(tmp_path / "cam.mp4", frames=3)
    webcam, stylize = load_script("webcam"), load_script("stylize")
    live = [f"model={export_path}", f"source={clip}", "headless=true", "realtime=false", "backend=torch"]
    assert webcam.main([*live, "keep_host_memory=false"]) == 0 and calls == []
    assert webcam.main(live) == 0 and calls == [True]
    assert stylize.main([f"model={export_path}", f"input={clip}", f"output={tmp_path / 'out.mp4'}", "progress=false"]) == 0
    assert calls == [True, True] and probe(tmp_path / "out.mp4")[0] == 3


@pytest.mark.slow
def test_stylize_cli_video_image_folder_and_preset(export_path, clip, tmp_path):
    script = str(ROOT / "scripts" / "stylize.py")
    preset = tmp_path / "checkpoints" / "wave"
    preset.mkdir(parents=True)
    (preset / "wave.safetensors").write_bytes(export_path.read_bytes())
    run = subprocess.run([sys.executable, script, "model=wave", f"input={clip}", "output=out/clip.mp4"],
                         capture_output=True, text=True, cwd=tmp_path, env=SUBPROCESS_ENV)
    assert run.returncode == 0, run.stderr
    assert probe(tmp_path / "out" / "clip.mp4") == (12, FPS, W, H)
    assert "12/12" in run.stderr and "frame/s" in run.stderr  # the progress bar, in frames/s
    assert "12 frames, 64x48 at 15 fps, libx264, audio none" in run.stdout
    # image and folder, in-process (same code path as the CLI, without another interpreter start)
    stylize = load_script("stylize")
    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    for i, size in enumerate([(33, 21), (40, 40)]):
        cv2.imwrite(str(photos / f"p{i}.jpg"), np.full((size[1], size[0], 3), 60 * i + 40, np.uint8))
    assert stylize.main([f"model={export_path}", f"input={tmp_path / 'photos'}", f"output={tmp_path / 'styled'}", "progress=false"]) == 0
    assert sorted(p.name for p in (tmp_path / "styled" / "sub").iterdir()) == ["p0.jpg", "p1.jpg"]
    assert cv2.imread(str(tmp_path / "styled" / "sub" / "p0.jpg")).shape == (21, 33, 3)
    assert stylize.main([f"model={export_path}", f"input={photos / 'p0.jpg'}", f"output={tmp_path / 'p0.npy'}"]) == 0
    arr = np.load(tmp_path / "p0.npy")
    assert arr.shape == (21, 33, 3) and arr.dtype == np.float32


def test_stylize_cli_errors(capsys, export_path, tmp_path):
    stylize = load_script("stylize")
    assert stylize.main([f"model={export_path}", "input=missing.jpg", "output=o.png"]) == 2
    assert capsys.readouterr().err.strip() == "error: input not found: missing.jpg"
    assert stylize.main(["input=a.jpg", "output=b.png"]) == 2
    assert "error: missing model=..." in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    assert stylize.main([f"model={bad}", f"input={bad}", "output=o.png"]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


@pytest.mark.slow
def test_webcam_cli_headless_on_a_video_source(export_path, tmp_path):
    clip = make_video(tmp_path / "cam.mp4", frames=30)
    out = tmp_path / "live.mp4"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "webcam.py"), f"model={export_path},{export_path}", f"source={clip}",
         "headless=true", f"output={out}", "max_frames=6", "realtime=false"], capture_output=True, text=True, cwd=tmp_path, env=SUBPROCESS_ENV)
    assert run.returncode == 0, run.stderr
    assert probe(out) == (6, FPS, W, H)
    lines = run.stdout.strip().splitlines()
    assert lines[:2] == [f"model: {export_path}"] * 2 and lines[2].startswith("network: ")
    assert lines[3] == "styles: 1=hokusai, 2=hokusai" and "frames: 6" in run.stdout
    fps = re.fullmatch(r"fps: (\d+\.\d+)", lines[-1])
    assert fps and float(fps.group(1)) > 0


class EndlessCamera(FakeCamera):
    def __init__(self):
        super().__init__(n=10**9)

    def get(self, prop):
        return 0.0

    def release(self):
        pass


def test_capture_and_inference_overlap(stylizer, monkeypatch):
    """The camera keeps being read while a frame is stylized; frames captured meanwhile are dropped."""
    monkeypatch.setattr("stylenet.video.open_capture", lambda source: EndlessCamera())
    names = []
    original = stylizer.stylize

    def slow(*args, **kwargs):
        names.append({t.name for t in threading.enumerate()})
        time.sleep(0.05)
        return original(*args, **kwargs)

    stylizer.stylize = slow
    try:
        stats = run_live([stylizer], 0, headless=True, max_frames=3, log=lambda s: None)
    finally:
        del stylizer.stylize
    assert stats.frames == 3 and all("stylenet-capture" in n for n in names) and stats.dropped >= 1


class Painter:
    """A stylizer that paints its number: which style made a frame, and with which options."""

    def __init__(self, name: str, value: int):
        self.name, self.value, self.calls = name, value, []

    def stylize(self, frame, *, bgr, strength, preserve_color):
        self.calls.append(preserve_color)
        out = np.full_like(frame, self.value)
        out[..., 0] = 7 if preserve_color else self.value
        return out


def test_window_keys_act_on_the_next_frame(monkeypatch, clip, tmp_path):
    """The loop's own key path (cv2.waitKey → handle_key) with cv2's window calls recorded:
    tests/test_window.py does the same through a real window under Xvfb."""
    keys = {2: "n", 4: "o", 6: "c", 8: "s", 10: "q"}  # pressed while the Nth frame is on screen
    shown = []
    monkeypatch.setattr("stylenet.window.display_problem", lambda: None)
    monkeypatch.setattr(cv2, "namedWindow", lambda *args: None)
    monkeypatch.setattr(cv2, "imshow", lambda name, view: shown.append(view.copy()))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: ord(keys[len(shown)]) if len(shown) in keys else -1)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    a, b = Painter("a", 100), Painter("b", 200)
    stats = run_live([a, b], str(clip), overlay=False, realtime=False, snapshot_dir=tmp_path / "snaps", log=lambda s: None)
    assert stats.frames == len(shown) == 10  # q after the 10th of 12 frames
    assert [int(v[0, 0, 1]) for v in shown[:3]] == [100, 100, 200]  # n: the very next frame has the next style
    assert shown[3].shape == (H, W, 3) and shown[4].shape == (H, 2 * W, 3)  # o: side by side from the next frame
    frames = read_all(clip)
    assert np.array_equal(shown[4][:, :W], frames[4]) and (shown[4][:, W:] == 200).all()
    assert b.calls == [False] * 4 + [True] * 4  # c (on frame 6): colours kept from frame 7 on
    assert (shown[5][:, W:, 0] == 200).all() and (shown[6][:, W:, 0] == 7).all()
    (snap,) = stats.snapshots  # s: the view on screen when it was pressed
    assert snap.parent == tmp_path / "snaps" and np.array_equal(cv2.imread(str(snap)), shown[7])


def test_printed_fps_is_the_measured_end_to_end_rate(monkeypatch):
    """frames shown / wall time, inference included: never more than the stylizer allows."""
    monkeypatch.setattr("stylenet.video.open_capture", lambda source: EndlessCamera())
    overlays = []
    monkeypatch.setattr("stylenet.video.draw_overlay", lambda view, text: overlays.append(text))

    class Slow(Painter):
        def stylize(self, frame, **kwargs):
            time.sleep(0.04)
            return frame.copy()

    began = time.perf_counter()
    stats = run_live([Slow("slow", 0)], 0, headless=True, max_frames=10, log=lambda s: None)
    wall = time.perf_counter() - began
    assert stats.frames == 10 and stats.fps == stats.frames / stats.seconds
    assert 10 / wall <= stats.fps <= 1 / 0.04  # within the run's wall time; not above 25 frames/s of 40 ms each
    assert stats.fps == pytest.approx(10 / wall, rel=0.2)
    shown_fps = float(re.fullmatch(r"slow  (\d+\.\d) FPS", overlays[-1]).group(1))  # the overlay measures the same
    assert shown_fps == pytest.approx(stats.fps, rel=0.2)
