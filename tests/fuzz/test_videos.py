"""Broken videos through `stylize` and the webcam's headless loop, and a camera that is not there."""

from __future__ import annotations

import pytest

from . import entry
from .harness import check, run_case

VIDEOS = ["valid.mp4", "empty.mp4", "garbage.mp4", "text.avi", "truncated-header.mp4", "jpeg-named.mp4", "truncated-half.mp4"]


def expected(kind: str):
    return ("ok", "error") if kind == "any" else kind


@pytest.mark.parametrize("name", VIDEOS)
def test_stylize_each_video(name, video_corpus, export_path, tmp_path):
    path, expect = video_corpus[name]
    out = tmp_path / "out.mp4"
    outcome = check(run_case(f"stylize video {name}", lambda: entry.stylize(f"model={export_path}", f"input={path}", f"output={out}"),
                             timeout=180), expected(expect))
    assert out.exists() == (outcome.kind == "ok")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left behind


@pytest.mark.parametrize("name", VIDEOS)
def test_webcam_on_each_video(name, video_corpus, export_path, tmp_path):
    path, expect = video_corpus[name]
    out = tmp_path / "live.mp4"
    outcome = check(run_case(f"webcam source={name}", lambda: entry.webcam(f"model={export_path}", f"source={path}", f"output={out}"),
                             timeout=180), expected(expect))
    assert out.exists() == (outcome.kind == "ok")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("source", ["7", "-1", "not-a-camera"])
def test_missing_camera(source, export_path, tmp_path):
    check(run_case(f"webcam source={source}", lambda: entry.webcam(f"model={export_path}", f"source={source}"), timeout=60),
          "error", match=r"no camera at index 7|video not found|camera index is 0 or more")
