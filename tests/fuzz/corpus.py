"""The malformed inputs, made at test time: images, model files, checkpoints, videos.

Each maker writes its files into a folder and returns {case name: (path, expected kind)}
where the kind is "ok" (it must work) or "error" (one clear `error:` line, exit 2).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .harness import MARKER

RNG = np.random.default_rng(8)


def photo(w: int = 64, h: int = 48) -> Image.Image:
    """A small RGB photo: gradients plus grain (every format encodes it)."""
    x = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3)) * np.array([1.0, 0.6, 0.3])
    return Image.fromarray((x + RNG.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8))


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG whose header declares width×height (RGB, 8 bit) with almost no pixel data: a few KB."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def flip_byte(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


def with_exif(image: Image.Image, orientation) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(image, "JPEG", exif=exif.tobytes())


def images(folder: Path) -> dict[str, tuple[Path, str]]:
    """Every kind of odd image file, with whether stylizing it must work or fail clearly."""
    folder.mkdir(parents=True, exist_ok=True)
    good = photo()
    jpeg, png = encoded(good, "JPEG"), encoded(good, "PNG")
    idat = png.index(b"IDAT")
    raw: dict[str, tuple[bytes, str]] = {
        "zero-byte.jpg": (b"", "error"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "error"),
        "truncated.png": (png[: len(png) // 2], "error"),
        "header-only.png": (png[:33], "error"),
        "garbage.png": (RNG.bytes(3000), "error"),
        "png-magic-garbage.png": (png[:8] + RNG.bytes(3000), "error"),
        "jpeg-magic-garbage.jpg": (b"\xff\xd8\xff\xe0" + RNG.bytes(3000), "error"),
        "tiff-magic-garbage.tif": (b"II*\x00" + RNG.bytes(3000), "error"),
        "webp-magic-garbage.webp": (b"RIFF" + struct.pack("<I", 3004) + b"WEBP" + RNG.bytes(3000), "error"),
        "text.jpg": (b"hello, I am a text file with an image name\n" * 20, "error"),
        "png-named.jpg": (png, "ok"),
        "jpeg-named.png": (jpeg, "ok"),
        "bad-crc-idat.png": (flip_byte(png, idat + 4 + struct.unpack(">I", png[idat - 4:idat])[0]), "any"),
        "bad-crc-ihdr.png": (flip_byte(png, 29), "error"),
        "zero-width.png": (png_declaring(0, 10), "error"),
        "bomb-40000x40000.png": (png_declaring(40000, 40000), "error"),
        "bomb-100000x100000.ppm": (b"P6\n100000 100000\n255\n" + RNG.bytes(3000), "error"),
        "bomb-65535x65535.gif": (b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b",\x00\x00\x00\x00"
                                 + struct.pack("<HH", 65535, 65535) + b"\x00\x02\x02D\x01\x00;", "error"),
        "declares-12000x12000-truncated.png": (png_declaring(12000, 12000), "error"),
        "short-pixel-data.png": (png_declaring(64, 48), "error"),  # every chunk valid (verify passes), too few pixels
        "text-chunk-bomb.png": (png_declaring(8, 8, png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"\x00" * (8 << 20), 9))), "any"),
        "exif-garbage.jpg": (jpeg[:2] + b"\xff\xe1" + struct.pack(">H", 40) + b"Exif\x00\x00" + RNG.bytes(32) + jpeg[2:], "ok"),
    }
    files = {}
    for name, (data, expect) in raw.items():
        (folder / name).write_bytes(data)
        files[name] = (folder / name, expect)

    def save(name: str, image: Image.Image, expect: str = "ok", **kw) -> None:
        image.save(folder / name, **kw)
        files[name] = (folder / name, expect)

    save("cmyk.jpg", good.convert("CMYK"))
    save("gray.jpg", good.convert("L"))
    save("bilevel.png", good.convert("1"))
    save("gray16.png", Image.fromarray((np.asarray(good.convert("L"), dtype=np.uint16) * 257)))
    save("int32.tif", good.convert("I"))
    save("float-with-nan.tif", Image.fromarray(np.where(np.eye(48, 64) > 0, np.nan, np.asarray(good.convert("L"), np.float32))))
    save("rgba.png", good.convert("RGBA"))
    save("gray-alpha.png", good.convert("LA"))
    save("palette.png", good.convert("P"))
    save("palette-transparent.png", good.convert("P"), transparency=0)
    save("palette-transparent.gif", good.convert("P"), transparency=3)
    save("1x1.png", good.resize((1, 1)))
    save("1x1.jpg", good.resize((1, 1)))
    save("2x2.bmp", good.resize((2, 2)))
    save("sliver-3x4000.png", good.resize((3, 4000)))
    save("sliver-4000x3.png", good.resize((4000, 3)))
    save("sliver-1x50000.png", good.resize((1, 50000)))
    frames = [photo(), photo(), photo()]
    save("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=50, loop=0)
    save("animated.png", frames[0], save_all=True, append_images=frames[1:], duration=50)
    save("animated.webp", frames[0], save_all=True, append_images=frames[1:], duration=50)
    for orientation in range(1, 9):
        (folder / f"exif-orientation-{orientation}.jpg").write_bytes(with_exif(good, orientation))
        files[f"exif-orientation-{orientation}.jpg"] = (folder / f"exif-orientation-{orientation}.jpg", "ok")
    (folder / "exif-orientation-9.jpg").write_bytes(with_exif(good, 9))
    files["exif-orientation-9.jpg"] = (folder / "exif-orientation-9.jpg", "ok")
    return files


# -- model files ---------------------------------------------------------------------------------
class Payload:
    """Pickled, it is a call that creates MARKER when unpickled: proof that code ran."""

    def __reduce__(self):
        return (open, (str(MARKER), "w"))


class SystemPayload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MODEL_NAMES = sorted("""
valid.safetensors valid.ckpt valid-fp16.safetensors odd-style-name.safetensors zero-byte.safetensors zero-byte.ckpt
random.safetensors random.ckpt random-pk-magic.ckpt random-pickle-magic.ckpt text.ckpt truncated.safetensors
truncated-header.safetensors truncated.ckpt header-length-huge.safetensors header-not-json.safetensors model.onnx
payload-legacy.ckpt payload-system.pt payload-zip.ckpt payload-in-state-dict.ckpt tensor.pt list.pt no-state-dict.ckpt
foreign-checkpoint.ckpt ckpt-other-loss-network.ckpt ckpt-width-huge.ckpt ckpt-model-a-string.ckpt ckpt-nan-weights.ckpt weights-only.ckpt
torchscript.pt width-huge.safetensors width-negative.safetensors width-zero.safetensors width-string.safetensors
width-float.safetensors width-bool.safetensors width-missing.safetensors num-residual-huge.safetensors
num-residual-1e8-float.safetensors num-residual-negative.safetensors arch-extra-key.safetensors
arch-class-unknown.safetensors arch-class-number.safetensors arch-nan.safetensors arch-a-string.safetensors
arch-a-list.safetensors arch-not-json.safetensors arch-missing.safetensors format-missing.safetensors
format-version-string.safetensors format-version-future.safetensors nan-weights.safetensors inf-weights.safetensors
missing-tensor.safetensors extra-tensor.safetensors wrong-shape.safetensors no-tensors.safetensors
one-residual-block-missing.safetensors not-stylenet.safetensors a-folder.safetensors missing.safetensors
""".split())


def model_files(folder: Path, export: Path, ckpt: Path) -> dict[str, tuple[Path, str]]:
    """Model files and checkpoints, broken every way we could think of."""
    from safetensors.torch import save_file

    from stylenet.modelfile import read_model_file

    folder.mkdir(parents=True, exist_ok=True)
    model = read_model_file(export)
    state, meta = model.state_dict, model.metadata
    arch = json.loads(meta["arch"])
    files: dict[str, tuple[Path, str]] = {}

    def raw(name: str, data: bytes, expect: str = "error") -> None:
        (folder / name).write_bytes(data)
        files[name] = (folder / name, expect)

    def export_with(name: str, expect: str = "error", tensors=None, **changes) -> None:
        metadata = {k: v for k, v in {**meta, **changes}.items() if v is not None}
        save_file(state if tensors is None else tensors, str(folder / name), metadata=metadata)
        files[name] = (folder / name, expect)

    def with_arch(name: str, **fields) -> None:
        export_with(name, arch=json.dumps({k: v for k, v in {**arch, **fields}.items() if v is not None}))

    def saved(name: str, obj, expect: str = "error") -> None:
        torch.save(obj, folder / name)
        files[name] = (folder / name, expect)

    shutil.copy(export, folder / "valid.safetensors")
    files["valid.safetensors"] = (folder / "valid.safetensors", "ok")
    shutil.copy(ckpt, folder / "valid.ckpt")
    files["valid.ckpt"] = (folder / "valid.ckpt", "ok")
    export_with("valid-fp16.safetensors", "ok", tensors={k: v.half() for k, v in state.items()})
    export_with("odd-style-name.safetensors", "ok", style_name="../../etc/passwd \u2603")
    data, ckpt_data = export.read_bytes(), ckpt.read_bytes()
    raw("zero-byte.safetensors", b"")
    raw("zero-byte.ckpt", b"")
    raw("random.safetensors", RNG.bytes(5000))
    raw("random.ckpt", RNG.bytes(5000))
    raw("random-pk-magic.ckpt", b"PK\x03\x04" + RNG.bytes(5000))
    raw("random-pickle-magic.ckpt", b"\x80\x02" + RNG.bytes(5000))
    raw("text.ckpt", b"not a checkpoint\n" * 50)
    raw("truncated.safetensors", data[: len(data) // 2])
    raw("truncated-header.safetensors", data[:20])
    raw("truncated.ckpt", ckpt_data[: len(ckpt_data) // 2])
    raw("header-length-huge.safetensors", struct.pack("<Q", 90 << 20) + b'{"a": 1}')
    raw("header-not-json.safetensors", struct.pack("<Q", 12) + b"{not json!!}")
    raw("model.onnx", b"\x08\x07\x12\x04onnx" + RNG.bytes(100))
    raw("payload-legacy.ckpt", pickle.dumps(Payload(), protocol=2))
    raw("payload-system.pt", pickle.dumps(SystemPayload(), protocol=4))
    saved("payload-zip.ckpt", {"state_dict": {}, "hyper_parameters": Payload()})
    saved("payload-in-state-dict.ckpt", {"state_dict": {"transformer.x": Payload()}, "hyper_parameters": {"model": {}}})
    saved("tensor.pt", torch.zeros(3))
    saved("list.pt", [1, 2, 3])
    saved("no-state-dict.ckpt", {"epoch": 1})
    saved("foreign-checkpoint.ckpt", {"state_dict": {"layer.weight": torch.zeros(2, 2)}, "hyper_parameters": {}})
    full = torch.load(ckpt, map_location="cpu", weights_only=True)

    def ckpt_with(name: str, expect: str = "error", state_dict=None, **hparams) -> None:
        hp = {**full["hyper_parameters"], **hparams}
        saved(name, {**full, "hyper_parameters": hp, "state_dict": state_dict or full["state_dict"]}, expect)

    ckpt_with("ckpt-width-huge.ckpt", model={**full["hyper_parameters"]["model"], "width": 100000})
    ckpt_with("ckpt-model-a-string.ckpt", model="slim")
    ckpt_with("ckpt-nan-weights.ckpt", state_dict={k: (v.clone().fill_(float("nan")) if k.startswith("transformer.") and v.is_floating_point() else v)
                                                   for k, v in full["state_dict"].items()})
    grams = {k: v for k, v in full["state_dict"].items() if k.startswith("target_gram_")}
    saved("ckpt-other-loss-network.ckpt", {**full, "state_dict": {**{k: v for k, v in full["state_dict"].items() if k not in grams},
                                                                 "target_gram_conv5_3": torch.zeros(512, 512)}}, "ok")
    saved("weights-only.ckpt", {k: v for k, v in full.items() if k not in ("optimizer_states", "lr_schedulers", "loops")}, "ok")
    ts = torch.jit.script(torch.nn.ReLU())
    torch.jit.save(ts, str(folder / "torchscript.pt"))
    files["torchscript.pt"] = (folder / "torchscript.pt", "error")
    # lying metadata: the weights are a width-16, 3-block network
    with_arch("width-huge.safetensors", width=100000)
    with_arch("width-negative.safetensors", width=-4)
    with_arch("width-zero.safetensors", width=0)
    with_arch("width-string.safetensors", width="abc")
    with_arch("width-float.safetensors", width=16.5)
    with_arch("width-bool.safetensors", width=True)
    with_arch("width-missing.safetensors", width=None)
    with_arch("num-residual-huge.safetensors", num_residual=100000000)
    with_arch("num-residual-1e8-float.safetensors", num_residual=1e8)
    with_arch("num-residual-negative.safetensors", num_residual=-1)
    with_arch("arch-extra-key.safetensors", depth=3)
    with_arch("arch-class-unknown.safetensors", **{"class": "EvilNet"})
    with_arch("arch-class-number.safetensors", **{"class": 5})
    export_with("arch-nan.safetensors", arch='{"class": "TransformerNet", "width": NaN, "num_residual": 3}')
    export_with("arch-a-string.safetensors", arch='"TransformerNet"')
    export_with("arch-a-list.safetensors", arch="[16, 3]")
    export_with("arch-not-json.safetensors", arch="{width: 16")
    export_with("arch-missing.safetensors", arch=None)
    export_with("format-missing.safetensors", format=None)
    export_with("format-version-string.safetensors", format_version="abc")
    export_with("format-version-future.safetensors", format_version="99")
    first = next(iter(state))
    export_with("nan-weights.safetensors", tensors={**state, first: torch.full_like(state[first], float("nan"))})
    export_with("inf-weights.safetensors", tensors={**state, first: torch.full_like(state[first], float("inf"))})
    export_with("missing-tensor.safetensors", tensors={k: v for k, v in state.items() if k != first})
    export_with("extra-tensor.safetensors", tensors={**state, "extra.weight": torch.zeros(3)})
    export_with("wrong-shape.safetensors", tensors={**state, first: state[first].flatten()[:10].clone()})
    export_with("no-tensors.safetensors", tensors={})
    export_with("one-residual-block-missing.safetensors",
                tensors={k: v for k, v in state.items() if not k.startswith("residuals.2.")})
    save_file({"x": torch.zeros(2)}, str(folder / "not-stylenet.safetensors"))
    files["not-stylenet.safetensors"] = (folder / "not-stylenet.safetensors", "error")
    (folder / "a-folder.safetensors").mkdir()
    files["a-folder.safetensors"] = (folder / "a-folder.safetensors", "error")
    files["missing.safetensors"] = (folder / "missing.safetensors", "error")
    assert sorted(files) == MODEL_NAMES, set(files) ^ set(MODEL_NAMES)
    return files


# -- videos --------------------------------------------------------------------------------------
def make_video(path: Path, frames: int = 6, size=(32, 24)) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, (3 * i) % size[0]:, 1] = 200
        writer.write(frame)
    writer.release()
    return path


def videos(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    valid = make_video(folder / "valid.mp4")
    data = valid.read_bytes()
    files = {"valid.mp4": (valid, "ok")}
    for name, content in {"empty.mp4": b"", "garbage.mp4": RNG.bytes(4000), "text.avi": b"not a video\n" * 40,
                          "truncated-header.mp4": data[:64]}.items():
        (folder / name).write_bytes(content)
        files[name] = (folder / name, "error")
    (folder / "jpeg-named.mp4").write_bytes(encoded(photo(), "JPEG"))
    files["jpeg-named.mp4"] = (folder / "jpeg-named.mp4", "any")  # FFmpeg reads a JPEG as a one-frame video
    (folder / "truncated-half.mp4").write_bytes(data[: len(data) // 2])
    files["truncated-half.mp4"] = (folder / "truncated-half.mp4", "any")  # some frames may decode
    return files


def photo_folder(folder: Path, n: int = 4) -> Path:
    """A few good training photos."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo(48, 40).save(folder / f"photo{i}.jpg")
    return folder


def narrow_export(path: Path, width: int = 1, num_residual: int = 0, seed: int = 0) -> Path:
    """A valid export of a very narrow network: what the big-input cases need, at a fraction of
    the compute (a 12000x12000 photo is 196 tiles) of the trained one."""
    from safetensors.torch import save_file

    from stylenet.modelfile import FORMAT, FORMAT_VERSION
    from stylenet.transformer import TransformerNet

    torch.manual_seed(seed)
    net = TransformerNet(width, num_residual)
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "style_name": f"narrow{width}",
                "arch": json.dumps({"class": "TransformerNet", **net.arch()})}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=metadata)
    return path


def noise_photo(path: Path, w: int, h: int) -> Path:
    """Noise compresses badly: a slow, big write to kill in the middle of."""
    Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path
