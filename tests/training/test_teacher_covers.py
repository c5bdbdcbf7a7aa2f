"""Covers for vision-language teachers: the `hf` backend loads a VLM (a tiny Idefics3 with random
weights, tests/training/tiny_vlm.py) with its processor and passes each item's cover to its vision
tower; the grammar still holds the answers. Covers are images this test writes with Pillow.
"""

from dataclasses import replace

import pytest
import torch
from PIL import Image
from tiny_vlm import build_tiny_vlm

from rgcd.config import Settings
from rgcd.training.frames import read_stage1_frames
from rgcd.training.reasoning.backends import HFTeacher, TeacherRequest
from rgcd.training.reasoning.prompts import pair_messages, with_covers
from rgcd.training.reasoning.run import answer_pairs, select_pairs


@pytest.fixture
def pairs_with_covers(world_ws, tmp_path):
    pairs, _ = select_pairs(read_stage1_frames(world_ws, Settings()), 3, 0.0)
    red, blue = tmp_path / "red.png", tmp_path / "blue.jpg"
    Image.new("RGB", (40, 30), (220, 20, 20)).save(red)
    Image.new("RGB", (30, 50), (20, 20, 220)).save(blue)
    both = replace(pairs[0], photo=replace(pairs[0].photo, cover_path=str(red)),
                   live=replace(pairs[0].live, cover_path=str(blue)))
    photo_only = replace(pairs[1], photo=replace(pairs[1].photo, cover_path=str(blue)))
    return [both, photo_only, pairs[2]]  # two covers, one cover, none


def test_hf_backend_shows_covers_to_a_vlm(pairs_with_covers, tmp_path):
    corpus = [m["content"] for p in pairs_with_covers for m in pair_messages(p)]
    model = build_tiny_vlm(corpus * 3, tmp_path / "tiny-vlm")
    cfg = Settings().teacher.model_copy(update={"backend": "hf", "model": str(model), "max_new_tokens": 700})
    teacher = HFTeacher(cfg)
    assert teacher.sees_images and teacher.grammar is not None
    seen: list[torch.Tensor] = []
    vision = teacher.model.model.vision_model
    vision.register_forward_hook(lambda module, args, kwargs, out: seen.append(kwargs["pixel_values"]),
                                 with_kwargs=True)
    requests = [TeacherRequest(p, pair_messages(p)) for p in pairs_with_covers]
    answers = answer_pairs(teacher, requests, retries=0)
    assert [a.status for a in answers] == ["accepted"] * 3, [a.error for a in answers]
    # the vision tower ran on the covers: two images for the first pair, one for the second, none after
    shapes = [tuple(px.shape[0:1]) for px in seen]
    assert shapes[:2] == [(2,), (1,)] and len(seen) == 2, shapes
    red_first, blue_second = seen[0][0], seen[0][1]
    assert red_first[0].mean() > red_first[2].mean() and blue_second[2].mean() > blue_second[0].mean()


def test_covers_are_image_parts_after_the_prompt_text(pairs_with_covers):
    both, photo_only, none = pairs_with_covers
    messages = with_covers(pair_messages(both), both)
    parts = messages[1]["content"]
    assert [p["type"] for p in parts] == ["text", "text", "image", "text", "image"]
    assert parts[2]["path"] == both.photo.cover_path and parts[4]["path"] == both.live.cover_path
    assert "Cover of the live stream" in parts[3]["text"]
    assert with_covers(pair_messages(none), none) == pair_messages(none)  # no cover, nothing changes


def test_a_missing_cover_file_is_a_clear_error_not_a_crash(pairs_with_covers, tmp_path):
    from rgcd.training.reasoning.backends import _missing_covers

    gone = replace(pairs_with_covers[2], photo=replace(pairs_with_covers[2].photo,
                                                       cover_path=str(tmp_path / "nope.png")))
    assert _missing_covers(gone) == [str(tmp_path / "nope.png")]
