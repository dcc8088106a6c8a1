"""The Hugging Face Hub without a network: pulls through huggingface_hub's real cache (built
here in its own layout), the errors of every bad spec, and the folder a push would send."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from stylenet import hub
from stylenet.hub import HubError, HubRef, parse, pick_file
from stylenet.modelfile import checkpoint_metadata, read_model_file

from .conftest import CHICAGO, ROOT

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def tiny_export(path: Path, style: str = "wave", seed: int = 0, **extra_metadata) -> Path:
    """A real (random-weight) stylenet export of a 1-block, width-8 network: 0.1 MB."""
    from stylenet.transformer import TransformerNet

    torch.manual_seed(seed)
    net = TransformerNet(width=8, num_residual=1)
    metadata = checkpoint_metadata({"hyper_parameters": {"model": {"width": 8, "num_residual": 1}, "style_name": style},
                                    "global_step": 7})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(net.state_dict(), str(path), metadata={**metadata, **extra_metadata})
    return path


def add_to_cache(cache: Path, repo_id: str, commit: str, files: dict[str, bytes], refs=("main",)) -> Path:
    """huggingface_hub's cache layout: models--OWNER--REPO/blobs/<sha256>, snapshots/<commit>/<file>
    (a relative symlink to its blob), refs/<branch or tag> holding the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return repo


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache as the library's default (HF_HUB_CACHE), offline mode on
    (HF_HUB_OFFLINE=1), no token. huggingface_hub reads these variables when it is imported,
    so its constants are set too."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    for key, value in {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 3)
    return cache


# ---------------------------------------------------------------- pulling through the cache


def test_pull_from_the_cache_offline(hf_cache, tmp_path):
    data = tiny_export(tmp_path / "src" / "wave.safetensors").read_bytes()
    add_to_cache(hf_cache, "alice/wave", COMMIT_A, {"wave.safetensors": data, "README.md": b"# wave\n",
                                                    "sub/other.safetensors": data})
    path = hub.download("hf://alice/wave/sub/other.safetensors")
    assert path.read_bytes() == data and hf_cache in path.parents
    assert read_model_file(path).style_name == "wave"
    with pytest.raises(HubError, match=r"holds 2 \.safetensors files \(sub/other\.safetensors, wave\.safetensors\)"):
        hub.download("hf://alice/wave")  # two files: the user names one


def test_stylizer_loads_a_hub_model(hf_cache, tmp_path):
    data = tiny_export(tmp_path / "wave.safetensors").read_bytes()
    add_to_cache(hf_cache, "alice/wave", COMMIT_A, {"wave.safetensors": data})
    path = hub.download("hf://alice/wave")  # its single .safetensors
    assert path.name == "wave.safetensors" and path.read_bytes() == data
    from stylenet.inference import Stylizer

    stylizer = Stylizer.load("hf://alice/wave", device="cpu")
    out = stylizer.stylize(np.full((20, 28, 3), 128, np.uint8))
    assert stylizer.name == "wave" and out.shape == (20, 28, 3) and out.dtype == np.uint8


def test_revision_pinning(hf_cache, tmp_path):
    old = tiny_export(tmp_path / "1" / "wave.safetensors", style="wave_v1", seed=1).read_bytes()
    new = tiny_export(tmp_path / "2" / "wave.safetensors", style="wave_v2", seed=2).read_bytes()
    add_to_cache(hf_cache, "alice/wave", COMMIT_A, {"wave.safetensors": old}, refs=("v1",))
    add_to_cache(hf_cache, "alice/wave", COMMIT_B, {"wave.safetensors": new}, refs=("main",))
    style = {spec: read_model_file(hub.download(spec)).style_name for spec in (
        "hf://alice/wave", "hf://alice/wave@main", f"hf://alice/wave@{COMMIT_A}", "hf://alice/wave@v1",
        f"hf://alice/wave/wave.safetensors@{COMMIT_A}", f"hf://alice/wave@{COMMIT_A}/wave.safetensors",
        f"hf://alice/wave/wave.safetensors@{COMMIT_B}")}
    assert list(style.values()) == ["wave_v2", "wave_v2", "wave_v1", "wave_v1", "wave_v1", "wave_v1", "wave_v2"]
    for missing in ("hf://alice/wave@v2", f"hf://alice/wave@{'c' * 40}"):
        with pytest.raises(HubError, match="not in the Hugging Face cache .* offline mode is on"):
            hub.download(missing)


def test_a_repository_of_pickles_is_refused(hf_cache, tmp_path):
    add_to_cache(hf_cache, "mallory/wave", COMMIT_A, {"pytorch_model.bin": b"\x80\x04pickle", "README.md": b"hi"})
    with pytest.raises(HubError, match=r"holds only pickle files \(pytorch_model\.bin\).*run code"):
        hub.download("hf://mallory/wave")
    for name in ("pytorch_model.bin", "last.ckpt", "model.pt", "w.pth", "x.pkl"):
        with pytest.raises(HubError, match="is a pickle"):
            hub.download(f"hf://mallory/wave/{name}")  # refused before the cache or the network is asked


def test_an_onnx_only_repository_gives_its_graph(hf_cache):
    add_to_cache(hf_cache, "alice/graph", COMMIT_A, {"wave.onnx": b"onnx bytes", "wave.bin": b"\x80"})
    assert hub.download("hf://alice/graph").name == "wave.onnx"


@pytest.mark.parametrize("names, picked", [
    (["README.md", "wave.safetensors", "wave.onnx", "wave.bin"], "wave.safetensors"),
    (["README.md", "sub/wave.onnx"], "sub/wave.onnx"),
])
def test_pick_file(names, picked):
    assert pick_file(names, HubRef("a/b")) == picked


@pytest.mark.parametrize("names, error", [
    ([], "holds no model file .* it has: nothing"),
    (["README.md", "config.json"], "holds no model file .* README.md"),
    (["a.onnx", "b.onnx"], r"holds 2 \.onnx files .* model=hf://a/b/a\.onnx"),
    (["model.ckpt", "optimizer.pt"], "only pickle files"),
    (["../evil.safetensors"], "not a file path inside the repository"),
])
def test_pick_file_errors(names, error):
    with pytest.raises(HubError, match=error):
        pick_file(names, HubRef("a/b"))


def test_nothing_cached_offline_fails_at_once(hf_cache):
    start = time.monotonic()
    for spec in ("hf://alice/nothing", "hf://alice/nothing/wave.safetensors", "hf://alice/nothing@v3"):
        with pytest.raises(HubError, match=r"not in the Hugging Face cache \(.*hf-cache\) and offline mode is on"):
            hub.download(spec)
    assert time.monotonic() - start < 2


def test_no_network_and_nothing_cached_fails_fast(hf_cache, monkeypatch):
    """Offline mode off: the real Hub call (here: no network; with one: no such repository)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    start = time.monotonic()
    with pytest.raises(HubError, match="hf://stylenet-tests/no-such-style-0.*(cannot be reached|no model repository)"):
        hub.download("hf://stylenet-tests/no-such-style-0")
    assert time.monotonic() - start < constants.HF_HUB_ETAG_TIMEOUT + 5


@pytest.fixture
def online(hf_cache, no_token, monkeypatch):
    """Offline mode off, with huggingface_hub's two calls stubbed (there is no Hub here): what
    `model_info` answers is set by the test, `hf_hub_download`'s arguments are recorded."""
    from types import SimpleNamespace

    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    state = SimpleNamespace(answer=None, downloads=[])

    def model_info(self, repo_id, revision=None, timeout=None, token=None, **kw):
        if isinstance(state.answer, BaseException):
            raise state.answer
        return SimpleNamespace(sha=COMMIT_A, siblings=[SimpleNamespace(rfilename=n) for n in state.answer])

    def hf_hub_download(repo_id, filename, **kw):
        state.downloads.append((repo_id, filename, kw["revision"], kw["local_files_only"]))
        return str(hf_cache / filename)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return state


def test_online_the_listing_picks_the_file_and_the_revision_stays_the_users(online, hf_cache):
    online.answer = ["README.md", "sample.jpg", "styles/wave.safetensors", "wave.onnx"]
    assert hub.download("hf://alice/wave@v2") == hf_cache / "styles/wave.safetensors"
    assert hub.download("hf://alice/wave/wave.onnx") == hf_cache / "wave.onnx"
    # the branch, not the commit it points to now: the cache's refs/v2 is what offline use reads later
    assert online.downloads == [("alice/wave", "styles/wave.safetensors", "v2", False), ("alice/wave", "wave.onnx", None, False)]
    with pytest.raises(HubError, match=r"alice/wave@main has no file 'other.safetensors' \(its model files: styles/wave"):
        hub.download("hf://alice/wave/other.safetensors")
    online.answer = ["pytorch_model.bin", "config.json"]
    with pytest.raises(HubError, match="holds only pickle files"):
        hub.download("hf://alice/wave")
    assert len(online.downloads) == 2  # nothing more was downloaded


def _http_error(cls, status: int):
    from types import SimpleNamespace

    return cls(f"{status} error", response=SimpleNamespace(status_code=status, headers={}, request=None))


@pytest.mark.parametrize("error, status, said", [
    ("RepositoryNotFoundError", 401, "no model repository alice/wave on the Hub, or it is private and no Hugging Face "
                                     "token was found: set HF_TOKEN"),
    ("GatedRepoError", 403, "the repository is gated: accept its conditions at https://huggingface.co/alice/wave"),
    ("RevisionNotFoundError", 404, "alice/wave has no revision 'main'"),
    ("HfHubHTTPError", 503, "the Hub answered 503"),
])
def test_online_hub_errors_are_one_line(online, error, status, said):
    from huggingface_hub import utils

    online.answer = _http_error(getattr(utils, error), status)
    with pytest.raises(HubError) as caught:
        hub.download("hf://alice/wave")
    assert said in str(caught.value) and "\n" not in str(caught.value)


# ---------------------------------------------------------------- the grammar


@pytest.mark.parametrize("spec, ref", [
    ("hf://alice/wave", HubRef("alice/wave")),
    ("hf://alice/wave/", HubRef("alice/wave")),
    ("hf://models/alice/wave", HubRef("alice/wave")),
    ("hf://alice/wave/sub/dir/w.safetensors", HubRef("alice/wave", "sub/dir/w.safetensors")),
    ("hf://alice/wave@v1.0", HubRef("alice/wave", None, "v1.0")),
    ("hf://alice/wave@refs/pr/3", HubRef("alice/wave", None, "refs/pr/3")),
    ("hf://alice/wave/w.onnx@" + COMMIT_A, HubRef("alice/wave", "w.onnx", COMMIT_A)),
    ("hf://alice/wave@dev/sub/w.safetensors", HubRef("alice/wave", "sub/w.safetensors", "dev")),
    ("hf://Alice-1/wave_2.x", HubRef("Alice-1/wave_2.x")),
])
def test_spec_grammar(spec, ref):
    assert parse(spec) == ref
    assert parse(str(ref)) == ref  # the canonical form reads back the same
    assert hub.is_hub_spec(spec) and hub.is_hub_spec(Path("hf:/x")) is False


@pytest.mark.parametrize("spec, why", [
    ("hf://", "names no OWNER/REPO"),
    ("hf://alice", "names no OWNER/REPO"),
    ("hf:///wave", "names no OWNER/REPO"),
    ("hf://alice/wave@", "nothing follows the @"),
    ("hf://alice/wave@a@b", "more than one @"),
    ("hf://alice/wave@bad name", "not a branch, tag or commit"),
    ("hf://alice/wave@..", "not a branch, tag or commit"),
    ("hf://alice/wave/../../etc/w.safetensors", "not a file path inside the repository"),
    ("hf://alice/wave/sub//w.safetensors", "not a file path inside the repository"),
    ("hf://alice/wave/a\\b.safetensors", "not a file path inside the repository"),
    ("hf://al--ice/wave", "not a repository id"),
    ("hf://alice/wa ve", "not a repository id"),
    ("hf://datasets/alice/wave", "datasets are not models"),
    ("hf://spaces/alice/wave", "spaces are not models"),
    ("https://huggingface.co/alice/wave", "does not start with hf://"),
])
def test_malformed_specs_say_the_grammar(spec, why):
    with pytest.raises(HubError, match=why) as caught:
        parse(spec)
    assert r"hf://OWNER/REPO[/FILE][@REVISION]" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("spec, why", [("hf://alice/wave/w.txt", "not a model file"),
                                       ("hf://alice/wave/w.bin@v1", "is a pickle")])
def test_files_stylenet_does_not_read(spec, why):
    with pytest.raises(HubError, match=why):
        parse(spec)


def test_any_spec_parses_to_a_safe_path_or_a_hub_error():
    """Whatever follows hf://, parse answers a HubRef whose file stays inside the repository,
    or a HubError (a ModelLoadError, so one `error:` line): never another exception."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    alphabet = st.sampled_from(list("ab/.@-_\\ \n:%~") + ["..", "safetensors", "onnx", "bin", "x"])

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(st.lists(alphabet, max_size=14).map("".join))
    def check(body):
        try:
            ref = parse("hf://" + body)
        except HubError as exc:
            assert "\n" not in str(exc).strip() or "\n" in body
            return
        assert ref.repo_id.count("/") == 1
        if ref.filename is not None:
            parts = ref.filename.split("/")
            assert not ref.filename.startswith("/") and ".." not in parts and "" not in parts
            assert "\\" not in ref.filename and "\n" not in ref.filename
            assert ref.filename.endswith((".safetensors", ".onnx"))

    check()


# ---------------------------------------------------------------- what a push sends


def test_build_hub_folder_and_its_model_card(tmp_path):
    from huggingface_hub import ModelCard

    from stylenet.hubcard import build_hub_folder

    loss = json.dumps({"network": "vgg16", "weights": "/home/alice/secret/vgg16-features.safetensors",
                       "content_layer": "relu2_2", "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0}, "style_weight": 1.0})
    quality = json.dumps({"matched Gatys iterations": 83, "warping error": 0.012})
    export = tiny_export(tmp_path / "ckpt" / "hokusai.safetensors", style="hokusai", loss=loss, quality=quality)
    onnx = tmp_path / "ckpt" / "hokusai.onnx"
    onnx.write_bytes(b"an onnx graph")
    from stylenet.commands.app import compose

    preset = compose(["style=hokusai"]).style  # what the export command hands over for a preset's name
    folder = build_hub_folder(export, tmp_path / "push", repo_id="alice/great-wave", onnx_path=onnx, photos=[CHICAGO],
                              cell=64, max_kb=30, revision="v2",
                              paintings={"hokusai": {k: preset[k] for k in ("title", "license", "url")}})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "hokusai.onnx", "hokusai.safetensors", "sample.jpg"]
    assert (folder / "hokusai.safetensors").read_bytes() == export.read_bytes()
    assert (folder / "hokusai.onnx").read_bytes() == onnx.read_bytes()
    sample = Image.open(folder / "sample.jpg")
    assert sample.format == "JPEG" and sample.size == (2 * 68 + 4, 68 + 4)  # one photo, one style: 2 cells
    assert (folder / "sample.jpg").stat().st_size <= 30_000

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "stylenet" and card.data.pipeline_tag == "image-to-image"
    assert {"style-transfer", "neural-style-transfer", "image-to-image"} <= set(card.data.tags)
    text = card.text
    assert "python scripts/stylize.py model=hf://alice/great-wave@v2 input=" in text
    assert 'Stylizer.load("hf://alice/great-wave@v2")' in text
    assert "![photos and their stylized versions](sample.jpg)" in text
    assert "The Great Wave off Kanagawa" in text and "licence: public domain" in text  # the preset's painting
    assert "https://raw.githubusercontent.com/jcjohnson/fast-neural-style/master/images/styles/wave.jpg" in text
    assert "| training steps | 7 |" in text and "| loss network | vgg16 |" in text
    assert "vgg16-features.safetensors" in text and "/home/alice" not in text  # a path: its file name only
    assert "| matched Gatys iterations | 83 |" in text and "| warping error | 0.012 |" in text
    assert "`hokusai.onnx` runs in ONNX Runtime" in text


def test_a_strangers_metadata_names_no_path_and_breaks_no_card(tmp_path):
    from huggingface_hub import ModelCard

    from stylenet.hubcard import build_hub_folder

    hostile = "../../outside\n---\nlibrary_name: evil\n| x |<script>"
    export = tiny_export(tmp_path / "in" / "x.safetensors", style=hostile)
    with pytest.warns(UserWarning) as caught:
        folder = build_hub_folder(export, tmp_path / "push", repo_id="alice/x", photos=[tmp_path / "missing.jpg"])
    said = [str(w.message) for w in caught]
    assert any("sample photos not found" in m and "missing.jpg" in m for m in said)
    assert any("the model card has no sample grid" in m for m in said)
    readme, model = sorted(p.name for p in folder.iterdir())
    assert readme == "README.md" and model.endswith(".safetensors") and not model.startswith(".")
    assert (folder / model).parent == folder and (folder / model).read_bytes() == export.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "push"]  # nothing written outside the folder
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "stylenet" and "<script>" not in card.text
    assert "../../outside --- library_name: evil \\| x \\|&lt;script&gt;" in card.text


def test_push_checks_fail_before_any_work(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"), raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for repo, why in (("alice", "not OWNER/REPO"), ("a/b/c", "not OWNER/REPO"), ("al--ice/x", "not OWNER/REPO"),
                      ("alice/wave", "needs a token with write access: set HF_TOKEN")):
        with pytest.raises(HubError, match=why):
            hub.check_push(repo)
    with pytest.raises(HubError, match="hub_revision='a b' is not a branch"):
        hub.check_push("alice/wave", revision="a b")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match=r"offline mode \(HF_HUB_OFFLINE=1\): unset it"):
        hub.check_push("alice/wave", token="hf_x")


@pytest.mark.slow
def test_export_cli_push_with_no_network_is_one_error_line_at_once(tmp_path):
    """No monkeypatching: the real `export.py push_to_hub=` in a fresh process; here there is no
    network (elsewhere the made-up token is refused): one `error:` line, exit 2, nothing exported."""
    export_path = tiny_export(tmp_path / "ckpt" / "wave.safetensors")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env = {**clean, "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_ETAG_TIMEOUT": "3",
           "HF_TOKEN": "hf_not_a_real_token"}
    start = time.monotonic()
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), f"ckpt={export_path}",
                          "push_to_hub=alice/wave", f"out_dir={tmp_path / 'out'}"],
                         capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "alice/wave" in lines[0], run.stderr
    assert not (tmp_path / "out").exists()  # failed before exporting anything
    assert elapsed < 40, elapsed  # Python and torch starting (seconds on a busy machine); the Hub check is immediate


@pytest.fixture
def no_token(tmp_path, monkeypatch):
    """No Hugging Face token anywhere huggingface_hub looks (HF_TOKEN, its token files)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"), raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.mark.parametrize("args, why", [
    (["push_to_hub=alice"], "push_to_hub='alice' is not OWNER/REPO"),
    (["push_to_hub=alice/wave"], "needs a token with write access: set HF_TOKEN or log in with `hf auth login`"),
    (["push_to_hub=alice/wave", "hub_revision=a..b"], "hub_revision='a..b' is not a branch"),
    (["push_to_hub=alice/wave", "+offline=1"], "offline mode (HF_HUB_OFFLINE=1): unset it"),
])
def test_export_cli_push_errors(tmp_path, monkeypatch, capsys, no_token, args, why):
    from huggingface_hub import constants

    from stylenet.commands.export import main

    if "+offline=1" in args:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        args = args[:-1]
    export_path = tiny_export(tmp_path / "ckpt" / "wave.safetensors")
    assert main([f"ckpt={export_path}", f"out_dir={tmp_path / 'out'}", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and why in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_export_cli_push_sends_the_export_its_graph_and_card(tmp_path, monkeypatch, capsys):
    """The command up to the upload: huggingface_hub's calls stubbed (there is no Hub here),
    everything it would send is real and read back."""
    from huggingface_hub import ModelCard

    from stylenet.commands.export import main

    sent = {}

    def upload(folder, repo_id, **options):
        sent.update(repo_id=repo_id, options=options, files={p.name: p.read_bytes() for p in Path(folder).iterdir()})
        return f"https://huggingface.co/{repo_id}/commit/0123"

    monkeypatch.setattr("stylenet.hub.check_push", lambda repo, token=None, revision=None: sent.update(checked=(repo, revision)))
    monkeypatch.setattr("stylenet.hub.push", upload)
    export_path = tiny_export(tmp_path / "ckpt" / "wave.safetensors")
    code = main([f"ckpt={export_path}", "push_to_hub=alice/wave", "private=true", "hub_revision=dev",
                 f"card.photos=[{CHICAGO}]", "card.cell=48", "commit_message=first wave"])
    out = capsys.readouterr().out
    assert code == 0
    assert sent["checked"] == ("alice/wave", "dev") and sent["repo_id"] == "alice/wave"
    assert sent["options"] == {"private": True, "revision": "dev", "commit_message": "first wave"}
    assert sorted(sent["files"]) == ["README.md", "sample.jpg", "wave.onnx", "wave.safetensors"]
    assert sent["files"]["wave.safetensors"] == export_path.read_bytes()
    assert sent["files"]["wave.onnx"] == (tmp_path / "ckpt" / "wave.onnx").read_bytes()
    (tmp_path / "README.md").write_bytes(sent["files"]["README.md"])
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "stylenet" and "model=hf://alice/wave@dev input=" in card.text
    assert "pushed:      https://huggingface.co/alice/wave/commit/0123" in out
    assert "load it:     python scripts/stylize.py model=hf://alice/wave@dev" in out


@pytest.mark.slow
def test_stylize_cli_pulls_from_the_cache(tmp_path):
    """`stylize.py model=hf://…` end to end, offline, through the cache layout."""
    cache = tmp_path / "hf-cache"
    add_to_cache(cache, "alice/wave", COMMIT_A, {"wave.safetensors": tiny_export(tmp_path / "w.safetensors").read_bytes()})
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env = {**clean, "OMP_NUM_THREADS": "1", "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    Image.new("RGB", (24, 20), (200, 100, 50)).save(tmp_path / "in.png")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "stylize.py"), "model=hf://alice/wave",
                          f"input={tmp_path / 'in.png'}", f"output={tmp_path / 'out.png'}", "device=cpu"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "out.png").size == (24, 20)


def test_stylize_cli_with_a_spec_it_cannot_fetch(hf_cache, tmp_path, capsys):
    from stylenet.commands.stylize import main

    Image.new("RGB", (24, 20)).save(tmp_path / "in.png")
    for spec, why in (("hf://alice/none", "error: hf://alice/none is not in the Hugging Face cache"),
                      ("hf://alice", "error: malformed Hub model 'hf://alice'"),
                      ("hf://alice/wave/pytorch_model.bin", "is a pickle (.bin)")):
        assert main([f"model={spec}", f"input={tmp_path / 'in.png'}", f"output={tmp_path / 'out.png'}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err, err
    assert not (tmp_path / "out.png").exists()


def test_export_of_a_hub_model_writes_to_the_working_directory(hf_cache, tmp_path, monkeypatch, capsys):
    """Not into huggingface_hub's cache, where the file it came from lives."""
    from stylenet.commands.export import main

    data = tiny_export(tmp_path / "src" / "wave.safetensors").read_bytes()
    repo = add_to_cache(hf_cache, "alice/wave", COMMIT_A, {"wave.safetensors": data})
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["ckpt=hf://alice/wave", "fp16=true"]) == 0
    assert "safetensors: wave.safetensors" in capsys.readouterr().out
    assert read_model_file(work / "wave.safetensors").metadata["dtype"] == "float16"
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before
