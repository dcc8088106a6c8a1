"""A video container is untrusted: its frame size, frame rate and frame count are checked.

- the images' pixel limit (`imageio.MAX_IMAGE_PIXELS`) holds for video frames, checked from
  the header before any frame is decoded (a huge JPEG named .mp4 is refused in a second);
- an implausible frame rate (1/5000, 100000, 0, NaN) falls back to a plausible one with a
  warning, and a writer asked for one refuses it;
- frames that change size mid-stream are scaled to the first size;
- `max_frames=-1` is an error, not an exit 0 with nothing written.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from numbers import Real
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stylenet import imageio
from stylenet.video import frame_limit, run_live
from stylenet.videofile import (MAX_FPS, MIN_FPS, FrameWriter, VideoError, VideoWarning, check_frame_size, stylize_video,
                                usable_fps)

from .test_imports import make_model

pytestmark = pytest.mark.usefixtures("one_thread")
SLOW_EXAMPLES = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Identity:
    """A stylizer returning its input: the tests are about the container, not the network."""

    name = "identity"

    def __init__(self):
        self.calls = 0

    def stylize(self, frames, bgr=True, **options):
        self.calls += 1
        return np.array(frames, copy=True)


def clip(path: Path, rate=Fraction(10), frames: int = 3, size=(32, 24), codec: str = "libx264") -> Path:
    """A tiny clip through PyAV at any rate its container takes (1/5000 included)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 30 * i, np.uint8), format="bgr24")
            frame.pts, frame.time_base = i, 1 / Fraction(rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def jpeg(size: tuple[int, int], color=(200, 40, 10), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else color[0]).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


def decoded(path: Path) -> tuple[list[tuple[int, int]], float]:
    """([(w, h) of every frame], average rate) as FFmpeg reads the file back."""
    import av

    with av.open(str(path)) as f:
        stream = f.streams.video[0]
        return [(frame.width, frame.height) for frame in f.decode(stream)], float(stream.average_rate)


# -- the pixel limit ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jpeg_bomb(tmp_path_factory) -> Path:
    """A real 16000x16000 JPEG (256 million pixels, 3 MB: one grey) renamed .mp4: FFmpeg reads it
    as a one-frame video; decoded and stylized it took 8.5 GB."""
    path = tmp_path_factory.mktemp("bomb") / "holiday.mp4"
    path.write_bytes(jpeg((16000, 16000), (128,), mode="L"))
    return path


def test_a_huge_jpeg_named_mp4_is_refused_in_a_second_without_decoding(jpeg_bomb, tmp_path):
    """The stylize command and the webcam loop, in a fresh process: one error line each, from
    the header, within seconds and without decoding the 256-MP frame (peak memory < 1 GB)."""
    model = make_model(tmp_path / "narrow.safetensors")
    # the child's own peak is its VmHWM: getrusage's ru_maxrss is not, since Linux carries the
    # parent's peak into a (v)forked child at exec, so after the suite's heavier modules the
    # pytest process's 2.8 GB showed up here (ru_maxrss stays as the fallback where there is no /proc)
    script = f'''
import json, resource, sys, time
def peak_mb():
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
from stylenet.commands.stylize import main as stylize
from stylenet.commands.webcam import main as webcam
start = time.perf_counter()
codes = [stylize(["model={model}", "input={jpeg_bomb}", "output={tmp_path / 'out.mp4'}", "device=cpu", "progress=false"]),
         webcam(["model={model}", "source={jpeg_bomb}", "headless=true", "output={tmp_path / 'live.mp4'}", "device=cpu"])]
print(json.dumps({{"codes": codes, "seconds": time.perf_counter() - start,
                   "peak_mb": peak_mb()}}))
'''
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["codes"] == [2, 2]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all("16000x16000 frames, more than 200 million pixels" in e for e in errors), run.stderr
    assert all("STYLENET_MAX_IMAGE_PIXELS=N" in e for e in errors)
    assert result["seconds"] < 20 and result["peak_mb"] < 1024, result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["narrow.safetensors"]  # nothing written, no temp file


@given(width=st.integers(-5, 10**6), height=st.integers(-5, 10**6), limit=st.integers(1, 10**9))
def test_frame_size_check_follows_the_image_limit(width, height, limit):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imageio, "MAX_IMAGE_PIXELS", limit)
        if width > 0 and height > 0 and width * height <= limit:
            assert check_frame_size(width, height, "v.mp4") == (width, height)
        else:
            with pytest.raises(VideoError, match="v.mp4 declares no frame size|million pixels each"):
                check_frame_size(width, height, "v.mp4")


def test_a_clip_above_a_lowered_limit_is_refused_before_any_frame(tmp_path, monkeypatch):
    """The limit is the images' one: STYLENET_MAX_IMAGE_PIXELS moves both (here set in-process)."""
    video = clip(tmp_path / "clip.mp4", size=(64, 48))
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 64 * 48 - 1)
    stylizer = Identity()
    with pytest.raises(VideoError, match=r"64x48 frames, more than 0.003071 million pixels"):
        stylize_video(stylizer, video, tmp_path / "out.mp4", progress=False)
    with pytest.raises(VideoError, match=r"64x48 frames"):
        run_live([stylizer], str(video), headless=True, output=tmp_path / "live.mp4", realtime=False, log=lambda s: None)
    assert stylizer.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 64 * 48)  # at the limit: allowed
    assert stylize_video(stylizer, video, tmp_path / "out.mp4", progress=False).frames == 3


def test_a_frame_growing_past_the_limit_mid_stream_is_an_error(tmp_path, monkeypatch):
    """Concatenated JPEGs: FFmpeg's decoder is held to the same limit (its max_pixels option)."""
    src = tmp_path / "grows.mkv"
    src.write_bytes(jpeg((64, 48)) + jpeg((400, 300)) + jpeg((64, 48)))
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(VideoError, match=r"cannot decode .*grows.mkv.*larger than 0.01 million pixels"):
        stylize_video(Identity(), src, tmp_path / "out.mp4", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grows.mkv"]


# -- frame sizes that change mid-stream -----------------------------------------------------------
@SLOW_EXAMPLES
@given(sizes=st.lists(st.tuples(st.integers(8, 96), st.integers(8, 96)), min_size=1, max_size=5))
def test_frames_of_other_sizes_are_scaled_to_the_first(sizes, tmp_path):
    src = tmp_path / "sizes.mkv"
    src.write_bytes(b"".join(jpeg(size, (40 * i % 256, 90, 200)) for i, size in enumerate(sizes)))
    out = tmp_path / "out.mp4"
    stats = stylize_video(Identity(), src, out, progress=False)
    frames, _ = decoded(out)
    assert stats.size == sizes[0] and stats.frames == len(sizes) and frames == [sizes[0]] * len(sizes)


def test_live_loop_keeps_the_first_frame_size(tmp_path, monkeypatch):
    """A camera (or capture backend) whose frames change size: scaled back, one file size."""
    sizes = [(32, 24), (48, 40), (32, 24), (20, 10)]

    class ResizingCamera:
        def __init__(self):
            self.i = 0

        def read(self):
            if self.i == len(sizes):
                return False, None
            w, h = sizes[self.i]
            self.i += 1
            return True, np.full((h, w, 3), 60 * self.i, np.uint8)

        def get(self, prop):
            return 0.0

        def release(self):
            pass

    monkeypatch.setattr("stylenet.video.open_capture", lambda source: ResizingCamera())
    out = tmp_path / "live.mp4"
    # a file source (not an index): every frame taken, none dropped as a camera's would be
    stats = run_live([Identity()], "resizing.mp4", headless=True, output=out, overlay=False, realtime=False, log=lambda s: None)
    frames, rate = decoded(out)
    assert stats.frames == 4 and frames == [(32, 24)] * 4 and rate == 30.0  # no rate given: 30 fps


# -- frame rates ------------------------------------------------------------------------------------
RATES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.fractions(max_denominator=10**6).filter(lambda f: abs(f) < 10**9),
    st.integers(-10**6, 10**6),
    st.sampled_from([None, "30", "abc", True, Fraction(1, 5000), Fraction(30000, 1001), Fraction(10**9, 1)]),
)


@given(rate=RATES)
def test_usable_fps_is_a_plausible_fraction_or_none(rate):
    fps = usable_fps(rate)
    real = isinstance(rate, Real) and not isinstance(rate, bool) and math.isfinite(rate)
    if fps is not None:
        assert real and isinstance(fps, Fraction) and fps.denominator <= 1001 and MIN_FPS <= fps <= MAX_FPS
        assert abs(float(fps) - float(rate)) < 1e-3  # the nearest rate a container's time base holds
    elif real:
        assert not MIN_FPS * Fraction(1001, 1000) <= rate <= MAX_FPS  # refused only outside the range (or at its edge)


@SLOW_EXAMPLES
@given(rate=st.one_of(st.sampled_from([0, -30, float("nan"), float("inf"), Fraction(1, 5000), 10**6, 1001]),
                      st.fractions(Fraction(1, 60), Fraction(1000), max_denominator=1001)))
def test_the_writer_takes_a_plausible_rate_and_refuses_the_rest(rate, tmp_path):
    out = tmp_path / "w.mp4"
    if usable_fps(rate) is None:
        with pytest.raises(VideoError, match=r"fps: the rate must lie in 1/60\.\.1000"):
            FrameWriter(out, rate, (16, 16))
        assert list(tmp_path.iterdir()) == []
        return
    with FrameWriter(out, rate, (16, 16)) as writer:
        for i in range(2):
            writer.write(np.full((16, 16, 3), 50 * i, np.uint8))
    frames, back = decoded(out)
    assert frames == [(16, 16)] * 2 and back == pytest.approx(float(usable_fps(rate)), rel=1e-3)
    out.unlink()


@pytest.mark.parametrize("rate", [Fraction(1, 5000), Fraction(100000)])
def test_an_implausible_source_rate_falls_back_to_30_with_a_warning(rate, tmp_path):
    """1/5000 fps made the writer divide by zero; 100000 is past what MPEG-4 holds. The frames
    are intact, only their timing is nonsense: kept, written at 30 fps, and said so."""
    src = clip(tmp_path / "odd.mp4", rate=rate)
    out = tmp_path / "out.mp4"
    with pytest.warns(VideoWarning, match=rf"odd.mp4: its frame rate \({rate} fps\) is not plausible .*writing at 30 fps"):
        stats = stylize_video(Identity(), src, out, progress=False)
    assert stats.fps == 30.0 and decoded(out) == ([(32, 24)] * 3, 30.0)
    live = run_live([Identity()], str(src), headless=True, output=tmp_path / "live.mp4", realtime=True, log=lambda s: None)
    assert live.frames == 3 and decoded(tmp_path / "live.mp4")[1] == 30.0  # paced at 30 fps, not one frame per 83 min


# -- frame counts -----------------------------------------------------------------------------------
@given(n=st.one_of(st.integers(-10**9, -1), st.floats(), st.sampled_from([True, "3", None])))
def test_a_negative_or_odd_frame_count_is_an_error(n):
    with pytest.raises(VideoError, match=r"max_frames=.*: the number of frames to stylize, 0 for all"):
        frame_limit(n)


def test_max_frames_minus_one_is_an_error_line(capsys, tmp_path):
    from stylenet.commands.webcam import main

    model = make_model(tmp_path / "narrow.safetensors")
    assert frame_limit(0) == 0 and frame_limit(np.int64(5)) == 5
    assert main([f"model={model}", "source=0", "headless=true", "max_frames=-1", "device=cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "max_frames" in line and "-1" in line


def test_batch_size_must_be_positive(tmp_path):
    src = clip(tmp_path / "clip.mp4")
    for bad in (0, -2, 1.5, True):
        with pytest.raises(VideoError, match=r"batch_size=.*1 or more"):
            stylize_video(Identity(), src, tmp_path / "out.mp4", batch_size=bad, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
