"""Video files through PyAV (FFmpeg): their names, limits and errors, and stylizing one frame
by frame into a complete video.

Complete means what a user expects of a converter: the audio track kept (copied when the
output container can hold its codec, else re-encoded), frame rate and size kept (odd sizes
too: 4:4:4 chroma, which has no even-size rule), H.264 where the installed FFmpeg has
libx264, a progress bar in frames/s, and an interrupted run leaving no partial file at the
output path (`imageio.AtomicFile`). OpenCV's writer, used before, dropped audio and rounded
odd sizes down.

A container is untrusted: its declared frame size is checked against the images' pixel limit
(`imageio.MAX_IMAGE_PIXELS`) before any frame is decoded, FFmpeg's decoder is held to the same
limit (`max_pixels`), a frame rate outside `MIN_FPS`..`MAX_FPS` falls back to the next
plausible one (docs/reliability.md), and a frame whose size changes mid-stream is scaled to the
first frame's size. This module imports neither OpenCV nor (until a video is opened) PyAV:
the live loop (`video.py`) imports it, never the other way.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from . import imageio
from .errors import UserError
from .imageio import AtomicFile

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")
#: output suffix → (container format, video encoders in order of preference)
CONTAINERS = {
    ".mp4": ("mp4", ("libx264", "mpeg4")), ".m4v": ("mp4", ("libx264", "mpeg4")), ".mov": ("mov", ("libx264", "mpeg4")),
    ".mkv": ("matroska", ("libx264", "mpeg4")), ".avi": ("avi", ("libx264", "mpeg4", "mjpeg")),
    ".webm": ("webm", ("libvpx-vp9", "libvpx")),
}
#: audio codecs each container takes as they are (copied without re-encoding), and the encoder used otherwise
AUDIO_COPY = {"mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}, "mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le"},
              "matroska": None, "avi": {"mp3", "ac3", "pcm_s16le"}, "webm": {"opus", "vorbis"}}
AUDIO_ENCODER = {"mp4": "aac", "mov": "aac", "matroska": "aac", "avi": "libmp3lame", "webm": "libopus"}
DEFAULT_FPS = Fraction(30)
#: frame rates taken as real: a frame a minute (a time-lapse) to 1000 (slow-motion phones film 960);
#: outside this a rate is a broken header (1/5000 made the writer divide by zero; MPEG-4 takes no 100000)
MIN_FPS, MAX_FPS = Fraction(1, 60), Fraction(1000)


class VideoError(UserError, ValueError):
    """A video file cannot be read or written."""


class VideoWarning(UserWarning):
    """A readable video with something odd about it (an implausible frame rate)."""


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def usable_fps(rate) -> Fraction | None:
    """`rate` (a number or Fraction) as a Fraction if it is a plausible frame rate, else None:
    zero, negative, NaN, infinite, not a number, or outside `MIN_FPS`..`MAX_FPS`."""
    if isinstance(rate, bool) or not isinstance(rate, Real):
        return None
    try:
        fps = Fraction(rate) if isinstance(rate, (int, Fraction)) else Fraction(float(rate))
    except (ValueError, OverflowError):  # NaN, infinity
        return None
    fps = fps.limit_denominator(1001)  # 29.97 → 30000/1001: what a container's time base can hold
    return fps if MIN_FPS <= fps <= MAX_FPS else None


def stream_fps(stream, src) -> Fraction:
    """The frame rate to write a stream at: its average rate, else FFmpeg's guess, else its base
    rate, else `DEFAULT_FPS`, the first plausible one (`usable_fps`). A fallback, not an error:
    the frames are intact, only their timing is unknown; a VideoWarning says so."""
    declared = [getattr(stream, name, None) for name in ("average_rate", "guessed_rate", "base_rate")]
    for rate in declared:
        if (fps := usable_fps(rate)) is not None:
            return fps
    if any(rate for rate in declared):
        warnings.warn(f"{src}: its frame rate ({declared[0] or declared[1] or declared[2]} fps) is not plausible "
                      f"(outside {MIN_FPS}..{MAX_FPS}); writing at {DEFAULT_FPS} fps", VideoWarning, stacklevel=3)
    return DEFAULT_FPS


def check_frame_size(width: int, height: int, src) -> tuple[int, int]:
    """(width, height) if a frame this size may be decoded: both positive and at most the
    images' pixel limit (`imageio.MAX_IMAGE_PIXELS`, raised with STYLENET_MAX_IMAGE_PIXELS)."""
    width, height = int(width or 0), int(height or 0)
    if width <= 0 or height <= 0:
        raise VideoError(f"{src} declares no frame size; is it a video file?")
    limit = imageio.MAX_IMAGE_PIXELS
    if width * height > limit:
        raise VideoError(f"{src} has {width}x{height} frames, more than {limit / 1e6:g} million pixels each (a decompression "
                         "bomb, or a huge video); if it is genuine, allow it with STYLENET_MAX_IMAGE_PIXELS=N")
    return width, height


@dataclass
class VideoStats:
    frames: int
    fps: float
    size: tuple[int, int]
    seconds: float
    output: Path | None = None
    codec: str = ""
    audio: str = "none"          # "copied (aac)", "re-encoded (opus → aac)", "none", or why it was dropped


def open_input(src: Path):
    import av

    if not src.is_file():
        raise VideoError(f"video not found: {src}")
    try:
        # skip_frame: FFmpeg probes the streams without decoding a frame (an 8192x8192 H.264 clip
        # opened in 1 s and 190 MB decoding one while probing, 0.02 s and 36 MB without); the size
        # comes from the header, so `check_frame_size` runs before any pixel is decoded
        container = av.open(str(src), options={"skip_frame": "all"})
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"cannot read video {src}: {exc}; is it a video file?") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{src} has no video stream")
    return container


def check_header(src: Path) -> tuple[int, int] | None:
    """The frame size `src`'s header declares, checked (`check_frame_size`) without decoding a
    frame; None where PyAV cannot read the file (another reader, OpenCV's, may: it decides)."""
    try:
        container = open_input(src)
    except VideoError:
        return None
    with container:
        stream = container.streams.video[0].codec_context
        if not stream.width or not stream.height:
            return None
        return check_frame_size(stream.width, stream.height, src)


def pick_encoder(suffix: str) -> tuple[str, str]:
    """(container format, video encoder) for an output suffix: the first encoder FFmpeg has."""
    import av

    if suffix not in CONTAINERS:
        raise VideoError(f"cannot write {suffix or 'a file without suffix'} videos; use one of {', '.join(CONTAINERS)}")
    fmt, encoders = CONTAINERS[suffix]
    for name in encoders:
        if name in av.codecs_available:
            return fmt, name
    raise VideoError(f"this FFmpeg has none of the encoders {', '.join(encoders)} for {suffix}; use .mp4 or .avi")


def _pix_fmt(codec: str, width: int, height: int) -> str:
    if codec == "mjpeg":
        return "yuvj444p" if width % 2 or height % 2 else "yuvj420p"
    if width % 2 or height % 2:
        return "yuv444p"  # 4:2:0 needs even sizes; 4:4:4 keeps the exact size
    return "yuv420p"


class FrameWriter:
    """Encode BGR uint8 frames at a constant rate into `path`, with an optional audio stream.

    `preset` is x264's speed/size trade: `medium` for files (stylize), `veryfast` for the live
    loop, where encoding a 640x480 frame at `medium` cost 13 ms of a 66 ms frame on 2 cores."""

    def __init__(self, path: str | os.PathLike, fps: Fraction | float, size: tuple[int, int], audio_template=None, crf: int = 18,
                 preset: str = "medium"):
        import av

        self.path, self.size, self.frames = Path(path), (int(size[0]), int(size[1])), 0
        if min(self.size) <= 0:
            raise VideoError(f"cannot write {self.path}: frame size {self.size[0]}x{self.size[1]}; both sides must be positive")
        rate = usable_fps(fps)  # 29.97 → 30000/1001
        if rate is None:
            raise VideoError(f"cannot write {self.path} at {fps} fps: the rate must lie in {MIN_FPS}..{MAX_FPS}")
        self.fps, self._time_base = float(rate), 1 / rate
        fps = rate
        fmt, self.codec = pick_encoder(self.path.suffix.lower())
        self._file = AtomicFile(self.path)
        try:
            self._out = av.open(str(self._file.tmp), "w", format=fmt)
            self.video = self._out.add_stream(self.codec, rate=fps)
            self.video.width, self.video.height = self.size
            self.video.pix_fmt = _pix_fmt(self.codec, *self.size)
            if self.codec == "libx264":
                self.video.options = {"crf": str(crf), "preset": preset}
            elif self.codec in ("mpeg4", "mjpeg"):
                self.video.codec_context.qscale = 3
                self.video.codec_context.flags |= "QSCALE"
            self.audio, self.audio_note, self._copy_audio = None, "none", False
            if audio_template is not None:
                self._add_audio(fmt, audio_template)
        except Exception:
            self._file.discard()
            raise

    def _add_audio(self, fmt: str, template) -> None:
        import av

        codec = template.codec_context.codec
        name = getattr(codec, "canonical_name", None) or codec.name  # "mp3", not its decoder "mp3float"
        allowed = AUDIO_COPY.get(fmt)
        if allowed is None or name in allowed:
            self.audio = self._out.add_stream_from_template(template)
            self._copy_audio, self.audio_note = True, f"copied ({name})"
            return
        encoder = AUDIO_ENCODER[fmt]
        if encoder not in av.codecs_available:
            self.audio_note = f"dropped: {fmt} cannot hold {name} and this FFmpeg has no {encoder}"
            return
        self.audio = self._out.add_stream(encoder, rate=template.codec_context.sample_rate or 48000)
        self.audio_note = f"re-encoded ({name} → {encoder})"

    def write(self, frame_bgr: np.ndarray) -> None:
        import av

        if (frame_bgr.shape[1], frame_bgr.shape[0]) != self.size:
            raise VideoError(f"frame size {frame_bgr.shape[1]}x{frame_bgr.shape[0]} differs from the video's {self.size[0]}x{self.size[1]}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr), format="bgr24")
        frame.pts, frame.time_base = self.frames, self._time_base  # constant rate: frame i at i / fps
        for packet in self.video.encode(frame):
            self._out.mux(packet)
        self.frames += 1

    def write_audio(self, packet) -> None:
        """One packet of the source's audio stream: remuxed as it is, or decoded and re-encoded."""
        if self.audio is None:
            return
        if self._copy_audio:
            if packet.dts is None:  # the demuxer's flush packet
                return
            packet.stream = self.audio
            self._out.mux(packet)
            return
        for samples in packet.decode():
            samples.pts = None  # the encoder restamps in its own time base
            for out in self.audio.encode(samples):
                self._out.mux(out)

    def close(self, commit: bool = True) -> Path | None:
        if self._out is None:
            return None
        try:
            if commit:
                for packet in self.video.encode():
                    self._out.mux(packet)
                if self.audio is not None and not self._copy_audio:
                    for packet in self.audio.encode():
                        self._out.mux(packet)
        finally:
            self._out.close()
            self._out = None
        if commit and self.frames:
            return self._file.commit()
        self._file.discard()
        return None


    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(commit=exc_type is None)


def stylize_video(stylizer, src: str | os.PathLike, dst: str | os.PathLike, *, batch_size: int = 4, progress: bool = True,
                  stabilizer: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None, **options) -> VideoStats:
    """Stylize every frame of `src` into `dst`: same frame rate and size, the audio kept.

    Frames go through the network in batches of `batch_size`; `stabilizer(frame, stylized)`
    (`temporal.Stabilizer`) then runs on them in order. Options go to `Stylizer.stylize`.
    The declared frame size is checked before any frame is decoded (`check_frame_size`); a
    frame of another size later in the stream is scaled to the first one's (`frame_array`).
    """
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise VideoError(f"batch_size={batch_size!r}: the frames per network call, 1 or more")
    src, dst = Path(src), Path(dst)
    start = time.perf_counter()
    with open_input(src) as container:
        vin = container.streams.video[0]
        vin.thread_type = "AUTO"
        ain = container.streams.audio[0] if container.streams.audio else None
        size = check_frame_size(vin.codec_context.width, vin.codec_context.height, src)
        fps = stream_fps(vin, src)
        # FFmpeg's own bomb limit, for frames that grow past the header's size mid-stream
        vin.codec_context.options = {**vin.codec_context.options, "max_pixels": str(imageio.MAX_IMAGE_PIXELS)}
        writer = FrameWriter(dst, fps, size, audio_template=ain)
        committed = None
        bar = tqdm(total=vin.frames or None, unit="frame", disable=not progress, desc=src.name, dynamic_ncols=True)
        try:
            batch: list[np.ndarray] = []
            for packet in container.demux(*([vin, ain] if ain is not None else [vin])):
                if packet.stream.type == "audio":
                    writer.write_audio(packet)
                    continue
                for frame in _decode(packet, src):
                    batch.append(frame_array(frame, size))
                    if len(batch) == batch_size:
                        _stylize_batch(stylizer, batch, writer, stabilizer, options)
                        bar.update(len(batch))
                        batch = []
            if batch:
                _stylize_batch(stylizer, batch, writer, stabilizer, options)
                bar.update(len(batch))
            if not writer.frames:
                raise VideoError(f"no frames could be read from {src}")
            committed = writer.close(commit=True)
        finally:
            bar.close()
            if committed is None:
                writer.close(commit=False)
    return VideoStats(writer.frames, float(fps), size, time.perf_counter() - start, committed, writer.codec, writer.audio_note)


def _decode(packet, src: Path):
    import av

    try:
        return packet.decode()
    except av.FFmpegError as exc:
        raise VideoError(f"cannot decode {src}: {exc}; the file is damaged or not a video, or a frame is larger than "
                         f"{imageio.MAX_IMAGE_PIXELS / 1e6:g} million pixels (STYLENET_MAX_IMAGE_PIXELS=N allows more)") from None


def frame_array(frame, size: tuple[int, int]) -> np.ndarray:
    """A decoded frame as a BGR uint8 array of `size` (w, h): a frame whose size changed
    mid-stream (concatenated clips, a broken stream) is scaled to the video's first size, so
    the writer, the batch and the stabiliser see one size throughout."""
    if (frame.width, frame.height) == size:
        return frame.to_ndarray(format="bgr24")
    return frame.to_ndarray(format="bgr24", width=size[0], height=size[1], interpolation="AREA")


def _stylize_batch(stylizer, batch: list[np.ndarray], writer: FrameWriter, stabilizer, options: dict) -> None:
    for frame, out in zip(batch, stylizer.stylize(np.stack(batch), bgr=True, **options)):
        writer.write(stabilizer(frame, out) if stabilizer is not None else out)
