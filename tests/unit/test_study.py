"""study.toml errors: every message names the key, the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoswarm.study import StudyError, load_study

VALID = """\
name = "quickstart"
target = "train.py"
program = "program.md"
evaluate = "python train.py"
setup = "python prepare.py"
metric = "val_loss"
direction = "minimize"
time_budget = 5
timeout = 60
[acceptance]
quorum = 1
min_delta = 0.0
[mutator]
kind = "params"
"""


def _study(tmp_path: Path, text: str, files: tuple[str, ...] = ("train.py", "program.md")) -> Path:
    for name in files:
        (tmp_path / name).write_text("X = 1\n")
    (tmp_path / "study.toml").write_text(text)
    return tmp_path


def test_the_issue_example_parses(tmp_path):
    study = load_study(_study(tmp_path, VALID))
    assert (study.name, study.target, study.metric, study.direction) == ("quickstart", "train.py", "val_loss", "minimize")
    assert (study.time_budget, study.timeout, study.setup) == (5.0, 60.0, "python prepare.py")
    assert study.acceptance.quorum == 1 and study.mutator.kind == "params"


@pytest.mark.parametrize("change, key, hint", [
    (("timeout = 60", "timout = 60"), "timout", "did you mean 'timeout'"),
    (('target = "train.py"\n', ""), "target", "add a line like `target = \"train.py\"`"),
    (('target = "train.py"', 'target = "missing.py"'), "target", "does not exist"),
    (('target = "train.py"', 'target = "../train.py"'), "target", "outside the study directory"),
    (('direction = "minimize"', 'direction = "lower"'), "direction", '"minimize" or "maximize"'),
    (("timeout = 60", "timeout = 0"), "timeout", "positive number of seconds"),
    (("timeout = 60", "timeout = -5"), "timeout", "positive number of seconds"),
    (("timeout = 60", 'timeout = "soon"'), "timeout", "expected a number of seconds"),
    (("timeout = 60", "timeout = 2"), "timeout", "shorter than time_budget"),
    (("time_budget = 5", "time_budget = nan"), "time_budget", "positive number"),
    (("quorum = 1", "quorum = 0"), "acceptance.quorum", ">= 1"),
    (("min_delta = 0.0", "min_delta = -1"), "acceptance.min_delta", ">= 0"),
    (("min_delta = 0.0", "noise_prior = -0.1"), "acceptance.noise_prior", "σ of one run"),
    (("min_delta = 0.0", "noise_prior = nan"), "acceptance.noise_prior", ">= 0"),
    (("min_delta = 0.0", "noise_prior = true"), "acceptance.noise_prior", "e.g. `noise_prior = 0.1`"),
    (("min_delta = 0.0", "min_dleta = 0.0"), "unknown key 'min_dleta'", "did you mean 'min_delta'"),
    (('name = "quickstart"', 'name = "has space"'), "name", "valid study name"),
    (('metric = "val_loss"', 'metric = "val loss"'), "metric", "metric name"),
    (('evaluate = "python train.py"', 'evaluate = ""'), "evaluate", "give the command"),
    (('program = "program.md"', 'program = "train.py"'), "program", "must not be the target"),
])
def test_each_error_names_key_problem_and_fix(tmp_path, change, key, hint):
    old, new = change
    assert old in VALID
    with pytest.raises(StudyError) as info:
        load_study(_study(tmp_path, VALID.replace(old, new)))
    message = str(info.value)
    assert key in message and hint in message, message
    assert str(tmp_path / "study.toml") in message, "the error says which file"


def test_a_stated_noise_is_read_and_kept_in_the_stored_spec(tmp_path):
    from autoswarm.coordinator.studies import study_spec_dict
    from autoswarm.study import parse_study

    study = load_study(_study(tmp_path, VALID.replace("min_delta = 0.0", "noise_prior = 0.12")))
    assert study.acceptance.noise_prior == 0.12
    assert parse_study(study_spec_dict(study)).acceptance.noise_prior == 0.12, "a restart keeps it"
    assert load_study(_study(tmp_path, VALID)).acceptance.noise_prior == 0.0, "none unless stated"


def test_broken_toml_is_reported_with_its_position(tmp_path):
    with pytest.raises(StudyError, match="not valid TOML.*line 2"):
        load_study(_study(tmp_path, 'name = "x"\ntarget = \n'))


def test_missing_directory_and_missing_file(tmp_path):
    with pytest.raises(StudyError, match="not a directory"):
        load_study(tmp_path / "nope")
    with pytest.raises(StudyError, match="no study.toml here"):
        load_study(tmp_path)


def test_program_is_optional_but_checked_when_named(tmp_path):
    text = VALID.replace('program = "program.md"\n', "")
    study = load_study(_study(tmp_path, text, files=("train.py",)))
    assert study.program == "program.md"
    with pytest.raises(StudyError, match="program: 'notes.md' does not exist"):
        load_study(_study(tmp_path, VALID.replace("program.md", "notes.md"), files=("train.py",)))
