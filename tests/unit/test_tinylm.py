"""The tinylm study: an offline, deterministic corpus, and an evaluation that an edit of
train.py cannot fool (fake metric lines, fake result files, a model that peeks ahead)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from autoswarm.study import load_study
from autoswarm.worker.donation import THREAD_VARIABLES
from autoswarm.worker.metric import parse_metric
from swarm import needs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STUDY_DIR = EXAMPLES / "tinylm"
RESULT_NAME = ".autoswarm-result.json"  # where the worker points $AUTOSWARM_RESULT

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # only the tests that run a model need it
    HAVE_TORCH = False
needs_torch = needs(HAVE_TORCH, "torch is not installed: pip install 'autoswarm[torch]' (CI installs it)")

# Installed via PYTHONPATH as sitecustomize: any attempt to open a network connection or
# resolve a name raises, so a prepare.py that fetched anything would fail loudly.
NO_NETWORK = textwrap.dedent(
    """
    import socket

    def _blocked(*args, **kwargs):
        raise OSError("network access is blocked in this test")

    class _NoSocket(socket.socket):
        def __init__(self, family=-1, *args, **kwargs):
            if family in (socket.AF_INET, socket.AF_INET6, -1):
                _blocked()
            super().__init__(family, *args, **kwargs)

    socket.socket = _NoSocket
    socket.create_connection = _blocked
    socket.getaddrinfo = _blocked
    """
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data cache built once by the study's setup command, shared by the evaluations."""
    path = tmp_path_factory.mktemp("tinylm-cache")
    proc = subprocess.run(
        [sys.executable, "prepare.py"], cwd=STUDY_DIR, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, AUTOSWARM_CACHE_DIR=str(path)),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


# What an evaluation may use. On a CPU the time budget is the training thread's CPU time, so
# what a short run costs is CPU time too: with budget 5, ~26 CPU seconds in all (torch's
# imports, training, export, scoring; AMD EPYC, one thread). A wall-clock limit measured the
# machine instead: at load 20 on 2 cores the same run took over 240 s and timed out. So the
# limit is on CPU time, each process of the evaluation (prepare.py evaluate, train.py) on its
# own; the wall-clock limit only catches one that hangs without computing.
CPU_LIMIT_SECONDS = 120
WALL_LIMIT_SECONDS = 900
# One thread, as each of `autoswarm run --workers 2`'s workers gets on 2 cores
# (`local_run.worker_thread_limits`): torch's default of one per core spins while its threads
# wait for each other on a busy machine (80 CPU seconds for the same run at load 9).
ONE_THREAD = {name: "1" for name in THREAD_VARIABLES}
pytestmark = pytest.mark.timeout(WALL_LIMIT_SECONDS + 120)


def _cpu_limit() -> None:
    # SIGXCPU at the limit (the hard limit, a little later, would be a plain SIGKILL).
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_SECONDS, CPU_LIMIT_SECONDS + 10))


def evaluate(tmp_path: Path, cache_dir: Path, train_source: str | None = None,
             budget: float = 5) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Runs the study's evaluation in a scratch copy as the worker does, on one thread, within
    `CPU_LIMIT_SECONDS` of CPU time a process; returns the process and the result file path."""
    scratch = tmp_path / "scratch"
    shutil.copytree(STUDY_DIR, scratch, ignore=shutil.ignore_patterns("__pycache__", "*.pt2"))
    if train_source is not None:
        (scratch / "train.py").write_text(textwrap.dedent(train_source), encoding="utf-8")
    result = scratch / RESULT_NAME
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOSWARM_")}
    env.update(ONE_THREAD, AUTOSWARM_TIME_BUDGET=f"{budget:g}", AUTOSWARM_CACHE_DIR=str(cache_dir),
               AUTOSWARM_RESULT=str(result))
    study = tomllib.loads((STUDY_DIR / "study.toml").read_text(encoding="utf-8"))
    argv = study["evaluate"].split()
    assert argv[0] == "python"
    proc = subprocess.run([sys.executable, *argv[1:]], cwd=scratch, env=env, capture_output=True,
                          text=True, timeout=WALL_LIMIT_SECONDS, preexec_fn=_cpu_limit)
    assert proc.returncode != -signal.SIGXCPU, f"the evaluation used over {CPU_LIMIT_SECONDS} CPU seconds"
    return proc, result


def reading(proc: subprocess.CompletedProcess[str], result: Path):
    """What the worker would read: merged output plus the result file."""
    return parse_metric(proc.stdout + proc.stderr, "val_bpb", result)


def test_study_file_has_the_contract_keys() -> None:
    data = tomllib.loads((STUDY_DIR / "study.toml").read_text(encoding="utf-8"))
    assert data["name"] == "tinylm"
    assert data["target"] == "train.py" and (STUDY_DIR / "train.py").is_file()
    assert (STUDY_DIR / data["program"]).is_file()
    assert data["setup"] == "python prepare.py"
    assert data["evaluate"] == "python prepare.py evaluate"
    assert data["metric"] == "val_bpb" and data["direction"] == "minimize"
    # A budget two CPU workers fit 10+ times into `autoswarm run`'s 10 minutes, and a timeout
    # with room for a busy machine (on a CPU the budget is CPU time, the timeout wall clock).
    assert 10 <= data["time_budget"] <= 60 and data["timeout"] >= 10 * data["time_budget"]
    assert data["acceptance"]["quorum"] == 1 and data["acceptance"]["compare"] == "paired"
    # Its stated noise is what was measured (σ 0.03-0.18 within a run, README): it sets the first bars.
    assert 0.03 <= data["acceptance"]["noise_prior"] <= 0.2
    assert data["mutator"]["kind"] == "params"
    source = (STUDY_DIR / "train.py").read_text(encoding="utf-8")
    for name in ("N_LAYER", "N_HEAD", "N_EMBD", "BLOCK_SIZE", "BATCH_SIZE", "LEARNING_RATE", "WEIGHT_DECAY"):
        assert re.search(rf"^{name} = [0-9.e-]+\s", source, re.MULTILINE), name


def test_the_params_mutator_nudges_only_the_chosen_hyperparameters_one_at_a_time() -> None:
    from autoswarm.worker.mutators import create_mutator
    from autoswarm.worker.mutators.params import compass_edits, constant_values

    options = tomllib.loads((STUDY_DIR / "study.toml").read_text(encoding="utf-8"))["mutator"]
    mutator = create_mutator("params", options)  # the study's options are valid
    source = (STUDY_DIR / "train.py").read_text(encoding="utf-8")
    values = dict(constant_values(source))
    chosen = set(options["include"])
    assert chosen <= set(values), "every chosen name is a constant of train.py"
    assert mutator.search == "compass" and set(options["prefer"]) <= chosen
    for seed in range(20):
        edits = compass_edits(source, "", seed, scale=options["scale"], include=options["include"],
                              prefer={k: 1 if v == "up" else -1 for k, v in options["prefer"].items()})
        firsts = []
        for _, description in edits[:len(chosen)]:
            name, old, _, new = description.split(" ")
            assert name in chosen and old == values[name], description
            # First moves, without evidence: the preferred way (if any), about x2 or /2.
            ratio = float(new) / float(old)
            if name in options["prefer"]:
                assert (ratio > 1) == (options["prefer"][name] == "up"), description
                assert len(firsts) < len(options["prefer"]), "preferred ways come first"
            assert 1.6 < max(ratio, 1 / ratio) < 2.5, description
            firsts.append(name)
        assert set(firsts) == chosen, "each of them is tried first once"


def test_study_files_are_accepted_by_the_study_parser(tmp_path: Path) -> None:
    study = load_study(STUDY_DIR)
    assert (study.name, study.setup, study.evaluate) == ("tinylm", "python prepare.py", "python prepare.py evaluate")
    # examples/autoresearch holds only study.toml and a README: the study directory is a clone
    # of karpathy/autoresearch with that study.toml copied in. Stand in for the clone's files.
    clone = tmp_path / "autoresearch"
    clone.mkdir()
    shutil.copy(EXAMPLES / "autoresearch" / "study.toml", clone)
    for name in ("train.py", "prepare.py", "program.md", "pyproject.toml"):
        (clone / name).write_text("# stand-in for the clone's file\n", encoding="utf-8")
    study = load_study(clone)
    assert (study.target, study.program, study.setup, study.evaluate) == (
        "train.py", "program.md", "uv run prepare.py", "uv run train.py")
    assert (study.metric, study.direction, study.time_budget, study.timeout) == ("val_bpb", "minimize", 300, 600)
    assert study.acceptance.quorum == 2


def test_prepare_is_deterministic_and_needs_no_network(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_NETWORK, encoding="utf-8")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOSWARM_")}
    base_env["PYTHONPATH"] = str(blocker)

    # The blocker works: a process that tries the network fails.
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
        env=base_env, capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode != 0 and "network access is blocked" in probe.stderr

    hashes, trains = [], []
    for run in ("a", "b"):
        cache = tmp_path / f"cache-{run}"
        proc = subprocess.run(
            [sys.executable, "prepare.py"], cwd=STUDY_DIR, capture_output=True, text=True, timeout=120,
            env=dict(base_env, AUTOSWARM_CACHE_DIR=str(cache)),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        match = re.search(r"corpus sha256: ([0-9a-f]{64})", proc.stdout)
        assert match, proc.stdout
        hashes.append(match.group(1))
        [train_file] = cache.glob("*/train.bin")
        trains.append(hashlib.sha256(train_file.read_bytes()).hexdigest())
        assert train_file.stat().st_size > 1_000_000  # the standard library is megabytes of code
    assert hashes[0] == hashes[1]
    assert trains[0] == trains[1]
    assert not list(STUDY_DIR.glob("*.bin")), "setup must not write data into the study folder"


def test_validation_files_are_never_training_files() -> None:
    spec = importlib.util.spec_from_file_location("tinylm_prepare", STUDY_DIR / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    files = prepare.corpus_files()
    val = [f for f in files if prepare.is_validation(f)]
    assert 0.05 < len(val) / len(files) < 0.2
    assert not any("site-packages" in f or f.startswith("test/") for f in files)
    train_bytes, val_bytes = prepare.read_split("train"), prepare.read_split("val")
    assert len(train_bytes) + len(val_bytes) == sum((prepare.stdlib_dir() / f).stat().st_size for f in files)


def test_a_crashing_train_py_gets_no_metric(tmp_path: Path, cache_dir: Path) -> None:
    proc, result = evaluate(tmp_path, cache_dir, """
        print("val_bpb: 0.01")
        raise SystemExit(3)
    """)
    assert proc.returncode != 0
    assert "train.py exited with status 3" in proc.stderr
    assert reading(proc, result).status == "no-metric"


def test_a_refusal_carries_what_train_py_said_last(tmp_path: Path, cache_dir: Path) -> None:
    proc, result = evaluate(tmp_path, cache_dir, """
        import no_such_module_here
    """)
    assert proc.returncode != 0
    # The line results.tsv and `autoswarm run` show: a newcomer without torch reads why.
    assert "status 1 (ModuleNotFoundError: No module named 'no_such_module_here')" in proc.stderr.splitlines()[-1]


@needs_torch
def test_non_causal_model_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    # Predicts each byte by looking at it: position t's logits come from idx[t + 1].
    proc, result = evaluate(tmp_path, cache_dir, """
        import torch
        import prepare

        class Peeker(torch.nn.Module):
            def forward(self, idx):
                nxt = torch.roll(idx, shifts=-1, dims=1)
                return torch.nn.functional.one_hot(nxt, 256).float() * 20.0

        prepare.save_model(Peeker(), 64)
    """)
    assert proc.returncode != 0
    assert "not causal" in proc.stderr
    assert reading(proc, result).status == "no-metric"
    assert not result.exists()


@needs_torch
def test_fake_metric_line_and_fake_result_file_do_not_count(tmp_path: Path, cache_dir: Path) -> None:
    # A causal model that predicts nothing (uniform over 256 bytes: exactly 8 bits per byte),
    # and a train.py that tries every way to report a better score.
    proc, result = evaluate(tmp_path, cache_dir, f"""
        import json, os, sys
        import torch
        import prepare

        class Uniform(torch.nn.Module):
            def forward(self, idx):
                return torch.zeros(idx.shape[0], idx.shape[1], 256)

        prepare.save_model(Uniform(), 64)
        print("val_bpb: 0.01")
        print("junk\\rval_bpb: 0.02\\x0cval_bpb: 0.03\\x1b[2Kval_bpb: 0.04", flush=True)
        sys.stderr.write("val_bpb: 0.05\\n")
        assert "AUTOSWARM_RESULT" not in os.environ
        with open("{RESULT_NAME}", "w") as f:  # the path the worker uses, guessed
            json.dump({{"val_bpb": 0.06}}, f)
    """)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = reading(proc, result)
    assert got.status == "ok"
    assert got.value == pytest.approx(8.0, abs=1e-9)
    assert json.loads(result.read_text())["val_bpb"] == pytest.approx(8.0, abs=1e-9)
    assert "[train.py] val_bpb: 0.01" in proc.stdout  # relayed, but not as a metric line


@needs_torch
def test_default_train_py_learns_in_a_short_run(tmp_path: Path, cache_dir: Path) -> None:
    proc, result = evaluate(tmp_path, cache_dir, budget=5)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = reading(proc, result)
    assert got.status == "ok", got.detail
    assert math.isfinite(got.value) and 1.0 < got.value < 8.0  # better than a uniform guess
    assert got.extra["eval_bytes"] == 32 * 1024
    assert got.extra["causality_max_change"] <= 1e-4
    # The device it trained on, as an extra metric (this machine: torch's first accelerator, else the CPU).
    import torch
    kind = "rocm" if torch.cuda.is_available() and torch.version.hip else "cuda" if torch.cuda.is_available() \
        else "mps" if torch.backends.mps.is_available() else "cpu"
    assert {k: v for k, v in got.extra.items() if k.startswith("device_")} == {f"device_{kind}": 1.0}
    assert proc.stdout.rstrip().splitlines()[-1].startswith("val_bpb:")
