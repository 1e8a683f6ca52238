"""Prompt files: one per classification and segmentation dataset, rendered from the data's classes."""

from __future__ import annotations

import pytest
import yaml

from marsbench.catalog import Task, get_card, list_cards
from marsbench.vlm import PromptError, load_prompt, packaged_prompts, parse_prompt, task_format
from marsbench.vlm.prompts import prompt_path


def names_for(card) -> list[str]:
    """Class names as a reader would give them (the card's, or plausible data names)."""
    if card.class_names:
        return list(card.class_names)
    made_up_by_test = {"mb-atmospheric_dust_cls_edr": ["dusty", "not_dusty"],
                       "mb-atmospheric_dust_cls_rdr": ["not_dusty", "dusty"],
                       "mb-change_cls_ctx": ["no_change", "change"],
                       "mb-change_cls_hirise": ["no_change", "change"],
                       "mb-frost_cls": ["background", "frost"],
                       "mb-mars_seg_mer": ["background", "soil", "bedrock", "sand", "big rock",
                                           "sky", "rover"],
                       "mb-mars_seg_msl": ["null", "soil", "bedrock", "sand", "big rock",
                                           "gravel", "rover"],
                       "mb-s5mars": ["background", "bedrock", "hole", "ridge", "rock", "rover",
                                     "sand/soil", "sky", "track"]}
    if card.name in made_up_by_test:
        return made_up_by_test[card.name]
    return [card.known_class_names.get(i, f"code{i}") for i in range(card.num_classes)]


CARDS = [c for c in list_cards() if c.task is not Task.DETECTION]


def test_every_classification_and_segmentation_dataset_has_a_prompt():
    assert len(CARDS) == 17
    assert packaged_prompts() == sorted(c.name for c in CARDS)


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.name)
def test_prompt_file_renders_for_its_dataset(card):
    raw = yaml.safe_load(prompt_path(card.name).read_text())
    assert raw["version"] and raw["dataset"] == card.name
    template = load_prompt(card.name, task=task_format(card))
    names = names_for(card)
    prompt = template.render(names, dataset=card.name)
    assert "expert Martian geologist" in prompt.system
    assert prompt.version == str(raw["version"]) and len(prompt.sha256) == 64
    for lab in prompt.labels:  # every offered label is the data's name of that class id
        assert names[lab.class_id] == lab.label
        assert lab.label in prompt.user
    if card.task is Task.SEGMENTATION:
        assert prompt.task == "presence"
        assert not {"background", "null"} & set(prompt.label_names)
        assert "none" in prompt.user
    else:
        assert prompt.task == ("multi_label" if card.multilabel else "single_label")
        assert len(prompt.labels) == len(names)
        assert "label only" in prompt.user or "labels only" in prompt.user
    if card.image_pair:
        assert prompt.image_captions == ("before", "after")


def test_domars16k_prompt_groups_codes_with_definitions():
    prompt = load_prompt("mb-domars16k").render(list(get_card("mb-domars16k").class_names))
    text = prompt.user
    for group in ("Aeolian bedforms:", "Topographic landforms:", "Slope features:",
                  "Impact landforms:", "Basic terrain:"):
        assert text.count(group) == 1
    assert "- sfx (crater field): many small impact craters together" in text
    assert text.index("Aeolian bedforms:") < text.index("- ael") < text.index("- aec") < \
        text.index("Topographic landforms:")
    assert "exactly one of ael, rou, cli, aec" in text


def test_fixed_class_list_refuses_a_reordered_dataset():
    codes = list(get_card("mb-domars16k").class_names)
    with pytest.raises(PromptError, match="same order required"):
        load_prompt("mb-domars16k").render(sorted(codes))


def test_data_derived_prompt_uses_the_data_names_and_invents_nothing():
    names = [get_card("mb-surface_cls").known_class_names.get(i, f"class_{i}") for i in range(24)]
    names[22], names[23] = "wheel", "turret"
    names[21] = "class_21"  # an id missing from a subset: a placeholder, not offered
    prompt = load_prompt("mb-surface_cls").render(names, class_aliases={23: ["turret", "arm turret"]})
    user = prompt.user
    assert "- apx (APXS): the APXS instrument" in user
    assert "\n- wheel\n" in user  # known only by name: listed bare
    assert "- turret (arm turret)\n" in user  # the data's own other name, nothing more
    assert "class_21" not in user and 21 not in [lab.class_id for lab in prompt.labels]
    assert [lab.class_id for lab in prompt.labels][-2:] == [22, 23]


def test_numeric_class_names_are_refused():
    with pytest.raises(PromptError, match="a number tells the model nothing"):
        load_prompt("mb-frost_cls").render(["0", "1"], dataset="mb-frost_cls")


def test_user_dataset_gets_the_generic_prompt_for_its_task():
    prompt = load_prompt("my-own-rocks", task="single_label").render(["basalt", "sandstone"])
    assert prompt.labels[1].label == "sandstone" and "basalt, sandstone" in prompt.user
    presence = load_prompt("my-seg", task="presence").render(["background", "dune"])
    assert presence.label_names == ["dune"]
    with pytest.raises(PromptError, match="no prompt file"):
        load_prompt("my-own-rocks")


def test_prompt_file_errors_name_the_problem():
    base = {"version": 1, "dataset": "x", "task": "single_label", "system": "s", "question": "q",
            "answer": "a"}
    with pytest.raises(PromptError, match="missing field"):
        parse_prompt({k: v for k, v in base.items() if k != "version"})
    with pytest.raises(PromptError, match="unknown field"):
        parse_prompt({**base, "verison": 2})
    with pytest.raises(PromptError, match="task"):
        parse_prompt({**base, "task": "detection"})
    with pytest.raises(PromptError, match="fixed needs the class list"):
        parse_prompt({**base, "classes_from": "fixed"})


def test_prompt_hash_follows_the_rendered_text():
    t = load_prompt("mb-frost_cls")
    a = t.render(["background", "frost"])
    b = t.render(["frost", "background"])
    assert a.sha256 != b.sha256
    assert a.sha256 == t.render(["background", "frost"]).sha256
