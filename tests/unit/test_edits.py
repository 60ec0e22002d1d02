"""Reading model answers: SEARCH/REPLACE blocks, whole files, descriptions."""

from __future__ import annotations

import pytest

from autoswarm.worker.mutators.edits import (
    EditApplyError,
    EditBlock,
    EditFormatError,
    apply_edit_blocks,
    describe_change,
    last_description,
    match_line_endings,
    parse_description,
    parse_edit_blocks,
    parse_whole_file,
    strip_thinking,
)
from autoswarm.worker.mutators.prompt import fence_for

SOURCE = "import math\n\nLR = 0.01\nBATCH = 32\n\ndef train():\n    return LR * BATCH\n"


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def test_one_block_with_prose_and_fences_around_it_is_parsed_and_applied():
    answer = ("DESCRIPTION: raise the learning rate\n\nHere is the change:\n\ntrain.py\n```python\n"
              + block("LR = 0.01\n", "LR = 0.02\n") + "```\nThat should help.\n")
    blocks = parse_edit_blocks(answer)
    assert blocks == [EditBlock("LR = 0.01\n", "LR = 0.02\n")]
    assert apply_edit_blocks(SOURCE, blocks) == SOURCE.replace("LR = 0.01", "LR = 0.02")
    assert parse_description(answer) == "raise the learning rate"


def test_several_blocks_apply_in_order_each_seeing_the_previous_result():
    blocks = parse_edit_blocks(block("LR = 0.01\n", "LR = 0.05\n") + block("LR = 0.05\nBATCH = 32\n",
                                                                           "LR = 0.05\nBATCH = 64\n"))
    assert apply_edit_blocks(SOURCE, blocks) == SOURCE.replace("0.01", "0.05").replace("32", "64")


def test_a_block_can_delete_and_a_block_can_span_indented_lines():
    blocks = parse_edit_blocks(block("import math\n\n", "") + block("def train():\n    return LR * BATCH\n",
                                                                   "def train():\n    return LR + BATCH\n"))
    assert apply_edit_blocks(SOURCE, blocks) == SOURCE.replace("import math\n\n", "").replace("LR * BATCH", "LR + BATCH")


@pytest.mark.parametrize("answer, message", [
    ("I would raise the learning rate.", "no SEARCH/REPLACE block"),
    ("", "no SEARCH/REPLACE block"),
    ("<<<<<<< SEARCH\nLR = 0.01\n>>>>>>> REPLACE\n", "expected ======="),
    ("<<<<<<< SEARCH\nLR = 0.01\n=======\nLR = 0.02\n", "not closed"),
    ("<<<<<<< SEARCH\nLR = 0.01\n", "no ======= line"),
    ("<<<<<<< SEARCH\nLR = 0.01\n=======\nLR = 0.02\n=======\nX\n>>>>>>> REPLACE\n", "expected >>>>>>> REPLACE"),
    ("=======\nLR = 0.02\n>>>>>>> REPLACE\n", "outside a block"),
])
def test_malformed_answers_are_format_errors_saying_what_is_wrong(answer, message):
    with pytest.raises(EditFormatError, match=message):
        parse_edit_blocks(answer)


def test_search_text_that_is_not_in_the_target_is_an_apply_error_quoting_it():
    with pytest.raises(EditApplyError, match=r"block 1: the SEARCH lines are not in the target.*'LR = 0.5'"):
        apply_edit_blocks(SOURCE, [EditBlock("LR = 0.5\n", "LR = 0.6\n")])


def test_ambiguous_search_text_is_an_apply_error_asking_for_more_context():
    source = "A = 1\nB = 2\nA = 1\n"
    with pytest.raises(EditApplyError, match="occur 2 times"):
        apply_edit_blocks(source, [EditBlock("A = 1\n", "A = 3\n")])
    # With one more line of context it is unique.
    assert apply_edit_blocks(source, [EditBlock("B = 2\nA = 1\n", "B = 2\nA = 3\n")]) == "A = 1\nB = 2\nA = 3\n"


def test_empty_search_is_rejected():
    with pytest.raises(EditApplyError, match="SEARCH part is empty"):
        apply_edit_blocks(SOURCE, [EditBlock("\n", "X = 1\n")])


def test_a_later_block_that_no_longer_matches_fails_naming_its_number():
    blocks = [EditBlock("LR = 0.01\n", "LR = 0.02\n"), EditBlock("LR = 0.01\n", "LR = 0.03\n")]
    with pytest.raises(EditApplyError, match="block 2"):
        apply_edit_blocks(SOURCE, blocks)


def test_trailing_whitespace_differences_still_match():
    source = "LR = 0.01   \nBATCH = 32\n"
    assert apply_edit_blocks(source, [EditBlock("LR = 0.01\n", "LR = 0.02\n")]) == "LR = 0.02\nBATCH = 32\n"


def test_crlf_line_endings_and_a_missing_final_newline_are_kept():
    source = "LR = 0.01\r\nBATCH = 32"
    new = apply_edit_blocks(source, parse_edit_blocks(block("BATCH = 32\n", "BATCH = 64\n")))
    assert new == "LR = 0.01\r\nBATCH = 64"


def test_markers_with_other_lengths_are_accepted():
    answer = "<<<<< SEARCH\nLR = 0.01\n=========\nLR = 0.02\n>>>>>>>>> REPLACE\n"
    assert parse_edit_blocks(answer) == [EditBlock("LR = 0.01\n", "LR = 0.02\n")]


def test_thinking_sections_are_ignored_even_when_they_draft_blocks():
    answer = ("<think>maybe\n" + block("LR = 0.01\n", "LR = 9\n") + "DESCRIPTION: draft\n</think>\n"
              "DESCRIPTION: final idea\n" + block("BATCH = 32\n", "BATCH = 48\n"))
    assert parse_edit_blocks(answer) == [EditBlock("BATCH = 32\n", "BATCH = 48\n")]
    assert parse_description(answer) == "final idea"
    assert strip_thinking("<think>never finished") == ""


def test_whole_file_answer_takes_the_one_fenced_block():
    answer = "DESCRIPTION: bigger batch\n\n```python\n" + SOURCE.replace("32", "64") + "```\n"
    assert parse_whole_file(answer) == SOURCE.replace("32", "64")


def test_whole_file_with_backticks_inside_uses_a_longer_fence():
    content = 'DOC = """\n```\nexample\n```\n"""\n'
    fence = fence_for(content)
    assert fence == "````"
    assert parse_whole_file(f"DESCRIPTION: x\n{fence}python\n{content}{fence}\n") == content


@pytest.mark.parametrize("answer, message", [
    ("DESCRIPTION: x\nX = 1\n", "no fenced code block"),
    ("```python\nX = 1\n", "not closed"),
    ("```\nX = 1\n```\nand also\n```\nY = 2\n```\n", "found 2 code blocks"),
])
def test_unusable_whole_file_answers_are_format_errors(answer, message):
    with pytest.raises(EditFormatError, match=message):
        parse_whole_file(answer)


def test_match_line_endings_follows_the_old_file():
    assert match_line_endings("a\nb\n", "x\r\ny") == "a\r\nb"
    assert match_line_endings("a\r\nb\r\n", "x\ny\n") == "a\nb\n"


@pytest.mark.parametrize("answer, expected", [
    ("DESCRIPTION: raise lr", "raise lr"),
    ("**Description:** raise lr", "raise lr"),
    ("- description: raise lr **", "raise lr"),
    ("# DESCRIPTION: warmup 100 steps\nmore text", "warmup 100 steps"),
    ("nothing here", ""),
    ("```\nDESCRIPTION: inside a fence\n```\n", "inside a fence"),
    ("```\nDESCRIPTION: inside\n```\nDESCRIPTION: outside\n", "outside"),
    (block("DESCRIPTION: in a block\n", "x\n") + "DESCRIPTION: real", "real"),
])
def test_description_line_variants(answer, expected):
    assert parse_description(answer) == expected


def test_description_is_one_line_and_capped():
    text = parse_description("DESCRIPTION: " + "word " * 100)
    assert "\n" not in text and len(text) <= 200 and text.endswith("…")


def test_last_description_skips_an_echoed_template():
    output = "DESCRIPTION: <template>\nworking...\nDESCRIPTION: halve the batch\nTokens used: 10\n"
    assert last_description(output, ignore="<template>") == "halve the batch"
    assert last_description("DESCRIPTION: <template>\n", ignore="<template>") == ""


def test_describe_change_names_the_first_changed_line():
    assert describe_change(SOURCE, SOURCE.replace("BATCH = 32", "BATCH = 48")) == \
        "edit without description: BATCH = 32 -> BATCH = 48"
    assert describe_change("a\n", "a\nb\n") == "edit without description: added b"
    assert describe_change("a\n", "a\n") == "edit without description"
