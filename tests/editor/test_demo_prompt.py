"""The closed-form demo and the prompt (issue 26.4): a colour word in the prompt picks the demo's colour, in the
one place the job's config is built (editor.settings), and the note next to Run says what the demo does."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch

from editor.job_status import JobStatus
from editor.models import ModelChoice
from editor.settings import (EditSettings, GenerateSettings, checked_edit_config, checked_generate_config,
                             demo_note, model_for_prompt, prompt_colour)
from tests.editor.apphelpers import small_scene

DEMO = "closed-form:#d02020"
HUB = "runwayml/stable-diffusion-v1-5"


def _session(spec: str | None = DEMO):
    scene = small_scene(60)
    selection = torch.zeros(len(scene))
    selection[:20] = 1.0
    return SimpleNamespace(job=JobStatus(), mask_task=JobStatus(), scene=scene, selection=selection,
                           up=(0.0, 0.0, 1.0), model_spec=spec, lock=threading.RLock())


def test_the_first_css_colour_name_in_the_prompt_is_its_colour():
    assert prompt_colour("a blue scarf") == ("blue", (0.0, 0.0, 1.0))
    assert prompt_colour("A Light Blue hat")[0] == "light blue"  # two words that make one name
    assert prompt_colour("a green hat with red dots")[0] == "green"
    assert prompt_colour("a bad decade") is None  # hex digits to the colour grammar, not colour words
    assert prompt_colour("a scarf") is None and prompt_colour("") is None


def test_only_the_closed_form_demo_takes_the_prompts_colour():
    assert model_for_prompt(DEMO, "a blue scarf") == "closed-form:#0000ff"
    assert model_for_prompt(DEMO, "a woollen scarf") == DEMO
    assert model_for_prompt(HUB, "a blue scarf") == HUB


def test_the_note_says_the_demo_ignores_the_meaning_and_which_colour_it_moves_toward():
    plain = demo_note(DEMO, "a woollen scarf")
    assert plain.startswith("The closed-form demo ignores the prompt's meaning: it moves the selected part "
                            "toward #d02020"), plain
    coloured = demo_note(DEMO, "a blue scarf")
    assert "toward #0000ff" in coloured and '"blue"' in coloured and "#d02020" in coloured, coloured
    assert "one colour, #0000ff" in demo_note(DEMO, "a blue mug", generate=True)
    assert demo_note(HUB, "a blue scarf") == ""  # a real model reads the prompt: nothing to say


def test_edit_and_generate_configs_move_toward_the_prompts_colour():
    models = ModelChoice(HUB)
    session = _session()
    assert checked_edit_config(session, EditSettings(prompt="a blue scarf", steps=2), models).model == \
        "closed-form:#0000ff"
    assert checked_edit_config(session, EditSettings(prompt="a scarf", steps=2), models).model == DEMO
    generated = checked_generate_config(session, GenerateSettings(prompt="an orange mug", steps=2), models)
    assert generated.model == "closed-form:#ffa500"
    named = checked_generate_config(session, GenerateSettings(prompt="a mug", model="closed-form:green", steps=2),
                                    models)
    assert named.model == "closed-form:green"  # no colour word: the spec as given


def test_what_may_change_reaches_the_edit_config_and_a_bad_choice_is_refused():
    """The Edit panel's "What may change" radio (issue 24): its value is EditConfig.edit, checked like any input."""
    from editor.edit_panel import EDIT_KIND_CHOICES
    from engine.edit.config import EDIT_KINDS

    assert [value for _, value in EDIT_KIND_CHOICES] == list(EDIT_KINDS)  # every kind offered, none invented
    models = ModelChoice()
    session = _session()
    for kind in EDIT_KINDS:
        assert checked_edit_config(session, EditSettings(prompt="red", steps=2, edit=kind), models).edit == kind
    assert checked_edit_config(session, EditSettings(prompt="red", steps=2), models).edit == "auto"
    with pytest.raises(ValueError, match="unknown edit kind"):
        checked_edit_config(session, EditSettings(prompt="red", steps=2, edit="everything"), models)
