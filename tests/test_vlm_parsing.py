"""Free-text answers -> class ids, on a table of realistic answers for several datasets."""

from __future__ import annotations

import pytest

from marsbench.catalog import get_card
from marsbench.vlm import load_prompt, parse_multi, parse_single

LANDMARKS = list(get_card("mb-landmark_cls").class_names)
DOMARS = list(get_card("mb-domars16k").class_names)
SURFACE = [get_card("mb-surface_cls").known_class_names.get(i, f"nsk{i}") for i in range(36)]
MULTI = list(get_card("mb-surface_multi_label_cls").class_names)
S5MARS = ["background", "bedrock", "hole", "ridge", "rock", "rover", "sand/soil", "sky", "track"]


def labels(dataset: str, names: list[str]):
    return load_prompt(dataset).render(names, dataset=dataset).labels


SINGLE = [
    # domars16k: codes, names, aliases, case, punctuation, sentences, markdown
    ("mb-domars16k", DOMARS, "cra", 13),
    ("mb-domars16k", DOMARS, "CRA", 13),
    ("mb-domars16k", DOMARS, "sfx.", 12),
    ("mb-domars16k", DOMARS, "crater field", 12),
    ("mb-domars16k", DOMARS, "Crater", 13),
    ("mb-domars16k", DOMARS, "**fsg**", 11),
    ("mb-domars16k", DOMARS, "`ael`", 0),
    ("mb-domars16k", DOMARS, "Answer: rid", 7),
    ("mb-domars16k", DOMARS, "The answer is smo", 5),
    ("mb-domars16k", DOMARS, "sfx (crater field)", 12),
    ("mb-domars16k", DOMARS, "This image most likely shows gullies on a crater wall.", None),
    ("mb-domars16k", DOMARS, "The image shows slope streaks.", 8),
    ("mb-domars16k", DOMARS, "Gullies", 11),
    ("mb-domars16k", DOMARS, "mass-wasting", 6),
    ("mb-domars16k", DOMARS, "Aeolian curved", 3),
    ("mb-domars16k", DOMARS, "aec\n\nThe dunes have crescent-shaped crests, unlike a cliff.", 3),
    ("mb-domars16k", DOMARS, "It is not a crater; it is a cliff.", 2),
    ("mb-domars16k", DOMARS, "I'm sorry, I can't help with that.", None),
    ("mb-domars16k", DOMARS, "", None),
    ("mb-domars16k", DOMARS, "cra or sfx", 13),  # leads with a label: the first is the answer
    ("mb-domars16k", DOMARS, "Either a crater or a crater field.", None),
    # landmark: multi-word names, plurals
    ("mb-landmark_cls", LANDMARKS, "swiss cheese", 6),
    ("mb-landmark_cls", LANDMARKS, "Swiss-cheese terrain", 6),
    ("mb-landmark_cls", LANDMARKS, "dark dunes", 2),
    ("mb-landmark_cls", LANDMARKS, "Slope Streak", 3),
    ("mb-landmark_cls", LANDMARKS, "spiders", 7),
    ("mb-landmark_cls", LANDMARKS, "Impact ejecta.", 5),
    ("mb-landmark_cls", LANDMARKS, "'bright dune'", 4),
    ("mb-landmark_cls", LANDMARKS, "Label: other", 0),
    ("mb-landmark_cls", LANDMARKS, "This is a bright dune field, not a dark dune.", 4),
    # binary with the data's own spelling
    ("mb-atmospheric_dust_cls_edr", ["not_dusty", "dusty"], "dusty", 1),
    ("mb-atmospheric_dust_cls_edr", ["not_dusty", "dusty"], "Not dusty.", 0),
    ("mb-atmospheric_dust_cls_edr", ["not_dusty", "dusty"], "not_dusty", 0),
    ("mb-atmospheric_dust_cls_edr", ["not_dusty", "dusty"], "The surface is clear.", 0),
    ("mb-atmospheric_dust_cls_edr", ["not_dusty", "dusty"], "There is no dust in the image.", 0),
    ("mb-frost_cls", ["background", "frost"], "frost", 1),
    ("mb-frost_cls", ["background", "frost"], "No frost", 0),
    ("mb-frost_cls", ["background", "frost"], "background", 0),
    ("mb-frost_cls", ["background", "frost"], "Yes", None),
    ("mb-change_cls_ctx", ["no_change", "change"], "change", 1),
    ("mb-change_cls_ctx", ["no_change", "change"], "No change.", 0),
    ("mb-change_cls_ctx", ["no_change", "change"], "There is no change between the images.", 0),
    ("mb-change_cls_ctx", ["no_change", "change"], "Unchanged", 0),
    # surface_cls: codes and the facts-sheet names; longest match wins
    ("mb-surface_cls", SURFACE, "mca", 21),
    ("mb-surface_cls", SURFACE, "Mastcam calibration target", 21),
    ("mb-surface_cls", SURFACE, "mastcam", 20),
    ("mb-surface_cls", SURFACE, "drill holes", 9),
    ("mb-surface_cls", SURFACE, "drill", 8),
    ("mb-surface_cls", SURFACE, "Light-toned veins", 17),
    ("mb-surface_cls", SURFACE, "nsk30", 30),  # a class known only by the data's name
]


@pytest.mark.parametrize(("dataset", "names", "answer", "expected"), SINGLE)
def test_single_label_answers(dataset, names, answer, expected):
    assert parse_single(answer, labels(dataset, names)) == expected


MULTI_CASES = [
    ("mb-surface_multi_label_cls", MULTI, "soi, roc, sky", (3, 4, 21)),
    ("mb-surface_multi_label_cls", MULTI, "['rtr', 'soi']", (3, 20)),
    ("mb-surface_multi_label_cls", MULTI, "Labels: soil; rover tracks; sky.", (3, 20, 21)),
    ("mb-surface_multi_label_cls", MULTI, "SPH, cla", (1, 15)),
    ("mb-surface_multi_label_cls", MULTI, "none", ()),
    ("mb-surface_multi_label_cls", MULTI, "I cannot see the image clearly.", None),
    ("mb-s5mars", S5MARS, "sky, sand/soil, rock", (4, 6, 7)),
    ("mb-s5mars", S5MARS, "Sand, bedrock and the rover's tracks", (1, 6, 8)),
    ("mb-s5mars", S5MARS, "bedrock, sky; no rover", (1, 7)),
    ("mb-s5mars", S5MARS, "None of them is present.", None),  # a sentence: not one we know
    ("mb-s5mars", S5MARS, "None.", ()),
    ("mb-s5mars", S5MARS, "[]", ()),
    ("mb-s5mars", S5MARS, "background", None),  # background is not offered
    ("mb-crater_multi_seg", list(get_card("mb-crater_multi_seg").class_names),
     "Layered craters and secondary craters", (2, 4)),
    ("mb-crater_multi_seg", list(get_card("mb-crater_multi_seg").class_names), "buried", (3,)),
    ("mb-boulder_seg", ["background", "boulder"], "boulder", (1,)),
    ("mb-boulder_seg", ["background", "boulder"], "Boulders are present.", (1,)),
    ("mb-boulder_seg", ["background", "boulder"], "none", ()),
]


@pytest.mark.parametrize(("dataset", "names", "answer", "expected"), MULTI_CASES)
def test_multi_label_answers(dataset, names, answer, expected):
    assert parse_multi(answer, labels(dataset, names)) == expected


def test_a_form_shared_by_two_classes_is_not_used_but_labels_still_are():
    from marsbench.vlm import parse_prompt

    template = parse_prompt({
        "version": 1, "dataset": "x", "task": "single_label", "system": "s", "question": "q",
        "answer": "a", "classes": [{"label": "aa1", "aliases": ["rock"]},
                                   {"label": "bb2", "aliases": ["rock"]}]})
    labs = template.render(["aa1", "bb2"]).labels
    assert parse_single("rock", labs) is None
    assert parse_single("bb2", labs) == 1
