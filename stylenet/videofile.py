"""Video files through PyAV (FFmpeg): stylize a file frame by frame into a complete video.

Complete means what a user expects of a converter: the audio track kept (copied when the
output container can hold its codec, else re-encoded), frame rate and size kept (odd sizes
too: 4:4:4 chroma, which has no even-size rule), H.264 where the installed FFmpeg has
libx264, a progress bar in frames/s, and an interrupted run leaving no partial file at the
output path (`imageio.AtomicFile`). OpenCV's writer, used before, dropped audio and rounded
odd sizes down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .imageio import AtomicFile

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


@dataclass
class VideoStats:
    frames: int
    fps: float
    size: tuple[int, int]
    seconds: float
    output: Path | None = None
    codec: str = ""
    audio: str = "none"          # "copied (aac)", "re-encoded (opus → aac)", "none", or why it was dropped


def _error(message: str) -> Exception:
    from .video import VideoError

    return VideoError(message)


def open_input(src: Path):
    import av

    if not src.is_file():
        raise _error(f"video not found: {src}")
    try:
        container = av.open(str(src))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _error(f"cannot read video {src}: {exc}; is it a video file?") from None
    if not container.streams.video:
        container.close()
        raise _error(f"{src} has no video stream")
    return container


def pick_encoder(suffix: str) -> tuple[str, str]:
    """(container format, video encoder) for an output suffix: the first encoder FFmpeg has."""
    import av

    if suffix not in CONTAINERS:
        raise _error(f"cannot write {suffix or 'a file without suffix'} videos; use one of {', '.join(CONTAINERS)}")
    fmt, encoders = CONTAINERS[suffix]
    for name in encoders:
        if name in av.codecs_available:
            return fmt, name
    raise _error(f"this FFmpeg has none of the encoders {', '.join(encoders)} for {suffix}; use .mp4 or .avi")


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
        fps = Fraction(fps).limit_denominator(1001)  # 29.97 → 30000/1001
        self.fps, self._time_base = float(fps), 1 / fps
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
            raise _error(f"frame size {frame_bgr.shape[1]}x{frame_bgr.shape[0]} differs from the video's {self.size[0]}x{self.size[1]}")
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
    """
    from tqdm.auto import tqdm

    src, dst = Path(src), Path(dst)
    start = time.perf_counter()
    with open_input(src) as container:
        vin = container.streams.video[0]
        vin.thread_type = "AUTO"
        ain = container.streams.audio[0] if container.streams.audio else None
        fps = Fraction(vin.average_rate or vin.guessed_rate or DEFAULT_FPS)
        size = (vin.codec_context.width, vin.codec_context.height)
        if not size[0] or not size[1]:
            raise _error(f"{src} declares no frame size; is it a video file?")
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
                    batch.append(frame.to_ndarray(format="bgr24"))
                    if len(batch) == batch_size:
                        _stylize_batch(stylizer, batch, writer, stabilizer, options)
                        bar.update(len(batch))
                        batch = []
            if batch:
                _stylize_batch(stylizer, batch, writer, stabilizer, options)
                bar.update(len(batch))
            if not writer.frames:
                raise _error(f"no frames could be read from {src}")
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
        raise _error(f"cannot decode {src}: {exc}; the file is damaged or not a video") from None


def _stylize_batch(stylizer, batch: list[np.ndarray], writer: FrameWriter, stabilizer, options: dict) -> None:
    for frame, out in zip(batch, stylizer.stylize(np.stack(batch), bgr=True, **options)):
        writer.write(stabilizer(frame, out) if stabilizer is not None else out)
