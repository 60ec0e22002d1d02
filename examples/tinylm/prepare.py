"""tinylm's pinned half: the corpus, the data API for `train.py`, and the evaluation.

Do not modify. Agents edit `train.py` only; this file decides what the score means.

    python prepare.py             build the training data into the cache and print the corpus hash
    python prepare.py evaluate    run train.py, then score the model it saved (the study's evaluation)
    python prepare.py score PATH  score an already saved model (for trying things by hand)

Corpus: the Python standard library's own `.py` files (present on every machine with Python),
read as raw bytes; tokens are bytes (vocabulary 256). A file belongs to the validation split
when the first byte of sha256(its relative path) is below 26 (about 10% of the files); all other
files are training data. The corpus is deterministic on a given machine; different Python
versions ship different standard libraries and so different corpora: compare scores only
between workers with the same `corpus_id` (printed with every score).

Evaluation (`evaluate`): runs `python train.py` as a child process, without `$AUTOSWARM_RESULT`
in its environment and with every line of its output prefixed (so nothing it prints can be read
as a metric line), then loads the model that train.py saved with `save_model()` (a
`torch.export` program: no code from train.py runs here), refuses it unless it is causal, and
prints `val_bpb` (bits per byte on validation bytes) as the last line and into
`$AUTOSWARM_RESULT`. The validation bytes are read from the standard library by this process
before train.py starts; train.py never gets them through this module.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import subprocess
import sys
import sysconfig
import time
import unicodedata
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------
# Fixed constants of the study.
# ---------------------------------------------------------------------------
VOCAB_SIZE = 256              # byte-level tokens
VAL_HASH_THRESHOLD = 26       # a file is validation when sha256(relpath)[0] < this (~10%)
SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
EVAL_CHUNKS = 32              # scored stretches of validation bytes, evenly spaced
EVAL_CHUNK_BYTES = 1024       # bytes scored per stretch: EVAL_CHUNKS * EVAL_CHUNK_BYTES in all
MAX_CONTEXT = 2048            # longest context the evaluation accepts (and can supply)
CAUSALITY_TOLERANCE = 1e-4    # max |change| of earlier log-probabilities when the future changes
DEFAULT_TIME_BUDGET = 20.0    # seconds, when AUTOSWARM_TIME_BUDGET is not set
MODEL_ENV = "TINYLM_MODEL_PATH"
DEFAULT_MODEL_PATH = "model.pt2"
META_NAME = "tinylm.json"
TRAIN_PREFIX = "[train.py] "
FORMAT_VERSION = 1            # bump when the cache layout or the split rule changes


class EvaluationError(RuntimeError):
    """The model cannot be scored; the message says why and what to do."""


# ---------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------
def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(root: Path | None = None) -> list[str]:
    """Relative POSIX paths of the corpus files, sorted: every `.py` file of the standard
    library outside test suites and installed third-party packages."""
    root = root or stdlib_dir()
    found: list[str] = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in names:
            if name.endswith(".py"):
                path = Path(directory) / name
                if path.is_file() and not path.is_symlink():
                    found.append(path.relative_to(root).as_posix())
    return sorted(found)


def is_validation(relpath: str) -> bool:
    """The pinned split rule: by a hash of the relative path, so it never depends on order."""
    return hashlib.sha256(relpath.encode("utf-8")).digest()[0] < VAL_HASH_THRESHOLD


def read_split(split: str, root: Path | None = None) -> bytes:
    """The concatenated bytes of one split ("train" or "val"), files in sorted path order."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    root = root or stdlib_dir()
    want_val = split == "val"
    parts = [(root / rel).read_bytes() for rel in corpus_files(root) if is_validation(rel) == want_val]
    return b"".join(parts)


def corpus_id(train: bytes, val: bytes) -> tuple[str, int]:
    """sha256 of the corpus (both splits, tagged) and a short integer form of it."""
    digest = hashlib.sha256()
    for tag, data in (("train", train), ("val", val)):
        digest.update(f"{tag}:{len(data)}:".encode())
        digest.update(data)
    hexdigest = digest.hexdigest()
    return hexdigest, int(hexdigest[:8], 16)


def cache_dir() -> Path:
    """Where setup writes the training data: $AUTOSWARM_CACHE_DIR (set by the worker), else
    ~/.cache/autoswarm-tinylm. Keyed by the Python version, whose stdlib is the corpus."""
    base = os.environ.get("AUTOSWARM_CACHE_DIR") or str(Path.home() / ".cache" / "autoswarm-tinylm")
    tag = f"py{sys.version_info.major}.{sys.version_info.minor}-v{FORMAT_VERSION}"
    return Path(base) / tag


def build_cache() -> dict[str, Any]:
    """Writes train.bin and meta.json into the cache directory; returns the metadata."""
    train, val = read_split("train"), read_split("val")
    sha, short = corpus_id(train, val)
    meta = {
        "corpus_sha256": sha,
        "corpus_id": short,
        "train_sha256": hashlib.sha256(train).hexdigest(),
        "train_bytes": len(train),
        "val_bytes": len(val),
        "python": sys.version.split()[0],
        "stdlib": str(stdlib_dir()),
        "files": len(corpus_files()),
    }
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    # Written under temporary names and renamed, so a reader never sees half a file.
    tmp = directory / f"train.bin.{os.getpid()}.tmp"
    tmp.write_bytes(train)
    os.replace(tmp, directory / "train.bin")
    tmp = directory / f"meta.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, directory / "meta.json")
    return meta


def _cached_train_bytes() -> bytes | None:
    directory = cache_dir()
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        data = (directory / "train.bin").read_bytes()
    except (OSError, ValueError):
        return None
    return data if hashlib.sha256(data).hexdigest() == meta.get("train_sha256") else None


# ---------------------------------------------------------------------------
# The API for train.py
# ---------------------------------------------------------------------------
def time_budget() -> float:
    """Training seconds, from $AUTOSWARM_TIME_BUDGET (set by the worker)."""
    try:
        value = float(os.environ.get("AUTOSWARM_TIME_BUDGET", ""))
    except ValueError:
        return DEFAULT_TIME_BUDGET
    return value if math.isfinite(value) and value > 0 else DEFAULT_TIME_BUDGET


def budget_clock(device) -> Callable[[], float]:
    """The clock the time budget runs on: a function giving the seconds spent since this call.

    On an accelerator (CUDA, ROCm, MPS, XPU) it is the wall clock, as in autoresearch: the
    device is the worker slot's own. On a CPU it is the CPU time of the calling thread, the
    one that runs the training loop: the cores of a CPU worker are often shared (other
    programs, other slots, other agents), and time the operating system gives them would
    otherwise cut the budget short by however busy the machine happens to be, which is noise
    and not a property of train.py. A thread that is descheduled does not use its budget.
    """
    import torch

    clock = time.thread_time if torch.device(device).type == "cpu" else time.perf_counter
    start = clock()
    return lambda: clock() - start


def load_train_data():
    """The training split as a 1-D uint8 torch tensor (the only data train.py gets).

    Read from the cache that setup built; built on the spot if it is missing or damaged.
    """
    import torch

    data = _cached_train_bytes()
    if data is None:
        try:
            build_cache()
            data = _cached_train_bytes()
        except OSError:
            data = None  # read-only cache: fall back to reading the corpus directly
        if data is None:
            data = read_split("train")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def save_model(model, block_size: int) -> Path:
    """Saves `model` for the evaluation, as a `torch.export` program.

    The contract: `model(idx)` with `idx` a (1, block_size) int64 tensor of byte values
    returns logits of shape (1, block_size, 256), where position t may depend only on
    idx[:, :t+1]. The program is exported on the model's device in eval mode.
    """
    import torch

    block_size = int(block_size)
    if not 1 <= block_size <= MAX_CONTEXT:
        raise ValueError(f"block_size must be between 1 and {MAX_CONTEXT}, got {block_size}")
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    model.eval()
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    example = torch.zeros((1, block_size), dtype=torch.long, device=device)
    with torch.no_grad():
        program = torch.export.export(model, (example,))
    path = Path(os.environ.get(MODEL_ENV) or DEFAULT_MODEL_PATH)
    meta = {"block_size": block_size, "device": str(device), "format": FORMAT_VERSION}
    torch.export.save(program, str(path), extra_files={META_NAME: json.dumps(meta)})
    return path


# ---------------------------------------------------------------------------
# The evaluation
# ---------------------------------------------------------------------------
def device_kind(device) -> str:
    """"cuda" (NVIDIA), "rocm" (AMD, through a ROCm build of torch), "mps", "xpu" or "cpu"."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and getattr(torch.version, "hip", None):
        return "rocm"
    return device.type


def eval_targets(val_len: int) -> list[int]:
    """Start offsets of the scored chunks: evenly spaced, and each with MAX_CONTEXT bytes of
    validation text before it, so every model gets its full context and all models are scored
    on exactly the same bytes."""
    span = val_len - MAX_CONTEXT - EVAL_CHUNK_BYTES
    if span < EVAL_CHUNKS:
        raise EvaluationError(f"the validation split has only {val_len} bytes; the evaluation needs more")
    return [MAX_CONTEXT + (i * span) // EVAL_CHUNKS for i in range(EVAL_CHUNKS)]


def load_model(path: Path):
    """Loads a saved model: (a fresh-copy factory, block_size, device)."""
    import torch

    if not path.is_file():
        raise EvaluationError(
            f"train.py saved no model at {path}; it must end with prepare.save_model(model, BLOCK_SIZE)"
        )
    extra = {META_NAME: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
        meta = json.loads(extra[META_NAME] or "{}")
        block_size = int(meta["block_size"])
        device = torch.device(meta.get("device", "cpu"))
    except Exception as exc:  # anything unreadable is the same problem for the user
        raise EvaluationError(f"cannot load the saved model {path}: {exc}; save it with prepare.save_model()") from exc
    if not 1 <= block_size <= MAX_CONTEXT:
        raise EvaluationError(f"the saved model's block_size {block_size} is outside 1..{MAX_CONTEXT}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EvaluationError("the model was saved on a GPU but this process sees none")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EvaluationError("the model was saved on Apple's MPS but this process cannot use it")
    pristine = program.module()

    def fresh():
        # A new copy for every independent use, so a model that keeps state in its buffers
        # cannot carry what it saw in one call into another.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's pytree deprecation noise
            return copy.deepcopy(pristine)

    return fresh, block_size, device


def _log_probs(module, window, device):
    """Float64 log-probabilities (T, 256) of one (T,) window of byte values."""
    import torch

    idx = window.to(device=device, dtype=torch.long).unsqueeze(0)
    logits = module(idx)
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (1, window.numel(), VOCAB_SIZE):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise EvaluationError(
            f"the model must return logits of shape (1, {window.numel()}, {VOCAB_SIZE}), got {shape}"
        )
    # To the CPU first: MPS has no float64.
    return torch.log_softmax(logits[0].cpu().double(), dim=-1)


def check_causality(fresh, block_size: int, device, val) -> float:
    """Refuses a model whose outputs at a position depend on later bytes.

    On a few real validation windows, the second half is replaced by random bytes; the
    log-probabilities of the first half must not change. Each call gets a fresh copy of the
    model. Returns the largest change seen.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    keep = max(1, block_size // 2)
    with torch.inference_mode():
        worst = _causality_probes(fresh, block_size, device, val, keep, generator)
    if worst > CAUSALITY_TOLERANCE:
        raise EvaluationError(
            f"the model is not causal: changing bytes after position {keep} changed its predictions "
            f"at earlier positions by up to {worst:.3g} (tolerance {CAUSALITY_TOLERANCE:g}); a prediction "
            "may use only the bytes before it (use a causal attention mask); refusing to score it"
        )
    return worst


def _causality_probes(fresh, block_size: int, device, val, keep: int, generator) -> float:
    import torch

    worst = 0.0
    starts = eval_targets(len(val))
    for start in (starts[0], starts[len(starts) // 2], starts[-1]):
        window = val[start - block_size:start].clone()
        changed = window.clone()
        changed[keep:] = torch.randint(0, VOCAB_SIZE, (block_size - keep,), generator=generator, dtype=torch.uint8)
        if block_size > 1 and torch.equal(changed, window):
            changed[-1] = (int(window[-1]) + 1) % VOCAB_SIZE
        a = _log_probs(fresh(), window, device)[:keep]
        b = _log_probs(fresh(), changed, device)[:keep]
        finite = torch.isfinite(a) & torch.isfinite(b)
        diff = float((a - b).abs()[finite].max()) if bool(finite.any()) else 0.0
        if not torch.equal(torch.isfinite(a), torch.isfinite(b)):
            diff = math.inf
        worst = max(worst, diff)
    return worst


def score(fresh, block_size: int, device, val) -> tuple[float, int]:
    """Bits per byte on the scored chunks, and the number of bytes scored.

    A chunk's bytes are predicted by windows of the model's own length that end inside it, with
    the validation text before the chunk as context; windows go forward in position order, so
    even a model with state only ever sees the past.
    """
    import torch

    module = fresh()
    total_nats = 0.0
    count = 0
    with torch.inference_mode():
        for start in eval_targets(len(val)):
            end = start + EVAL_CHUNK_BYTES
            scored_to = start  # bytes [start, scored_to) are done
            while scored_to < end:
                # window = input bytes [a, a + T); it predicts bytes [a + 1, a + T + 1)
                a = min(scored_to - 1, end - 1 - block_size)
                window = val[a:a + block_size]
                targets = val[a + 1:a + block_size + 1].long()
                logp = _log_probs(module, window, device)
                first = scored_to - (a + 1)  # skip targets scored by the previous window
                picked = logp[first:].gather(1, targets[first:].unsqueeze(1))
                total_nats -= float(picked.sum())
                count += block_size - first
                scored_to = a + block_size + 1
    return total_nats / math.log(2) / count, count


def _write_result(values: dict[str, float] | None) -> None:
    """Writes (or, on failure, removes) $AUTOSWARM_RESULT; always after train.py has run, so
    whatever train.py may have put there is replaced."""
    path = os.environ.get("AUTOSWARM_RESULT")
    if not path:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    if values is not None:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(values, handle)
        os.replace(tmp, path)


def _clean_line(text: str) -> str:
    """Control characters (carriage returns, escapes, form feeds...) shown as '?', so one line
    of train.py's output stays one prefixed line in the log."""
    return "".join("?" if unicodedata.category(ch) in ("Cc", "Zl", "Zp") and ch != "\t" else ch for ch in text)


def run_training(model_path: Path) -> tuple[int, str]:
    """Runs `python train.py` with its output relayed line by line under a prefix. Returns its
    exit status and its last line of output (for a crash, the exception: `ModuleNotFoundError:
    No module named 'torch'` when torch is not installed)."""
    env = {k: v for k, v in os.environ.items() if k != "AUTOSWARM_RESULT"}
    env[MODEL_ENV] = str(model_path)
    env["PYTHONUNBUFFERED"] = "1"
    # Same process group as this one, so the worker's kill at the timeout reaches train.py too.
    proc = subprocess.Popen(
        [sys.executable, "train.py"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=env,
    )
    assert proc.stdout is not None
    last = ""
    while True:
        raw = proc.stdout.readline(64 * 1024)
        if not raw:
            break
        for piece in raw.decode("utf-8", errors="replace").splitlines():
            line = _clean_line(piece)
            print(TRAIN_PREFIX + line, flush=True)
            last = line.strip() or last
    return proc.wait(), last


def _score_and_report(model_path: Path, val_bytes: bytes, extra: dict[str, float]) -> int:
    import torch

    val = torch.frombuffer(bytearray(val_bytes), dtype=torch.uint8)
    try:
        fresh, block_size, device = load_model(model_path)
        t0 = time.perf_counter()
        worst = check_causality(fresh, block_size, device, val)
        bpb, count = score(fresh, block_size, device, val)
        eval_seconds = time.perf_counter() - t0
    except EvaluationError as exc:
        print(f"evaluation refused: {exc}", file=sys.stderr, flush=True)
        _write_result(None)
        return 2
    except RuntimeError as exc:  # the saved program itself failed (shapes, devices, memory)
        print(f"evaluation failed: running the saved model raised {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)
        _write_result(None)
        return 2
    values = dict(extra)
    values[f"device_{device_kind(device)}"] = 1.0  # where it trained: save_model exports on that device
    values.update(
        block_size=float(block_size),
        eval_bytes=float(count),
        eval_seconds=round(eval_seconds, 3),
        causality_max_change=worst,
    )
    values["val_bpb"] = bpb
    print("---")
    for name, value in values.items():
        if name != "val_bpb":
            text = str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else f"{value:.6g}"
            print(f"{name + ':':<24}{text}")
    # The metric last: the worker takes the last `val_bpb:` line.
    print(f"{'val_bpb:':<24}{bpb:.6f}", flush=True)
    _write_result(values if math.isfinite(bpb) else None)
    return 0


def evaluate() -> int:
    """The study's evaluation: train (child process), check, score. Exit status 0 with the
    metric printed last, or non-zero with the reason and no metric."""
    _write_result(None)  # nothing left over from an earlier run can count
    # The validation bytes are taken now, before train.py runs, straight from the corpus, so
    # nothing train.py does to the cache can change what it is scored on.
    train_bytes, val_bytes = read_split("train"), read_split("val")
    _, short_id = corpus_id(train_bytes, val_bytes)
    del train_bytes
    model_path = Path.cwd() / f".tinylm-model-{os.getpid()}.pt2"
    try:
        model_path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        code, last = run_training(model_path)
        train_seconds = time.perf_counter() - t0
        _write_result(None)  # whatever train.py wrote there does not count
        if code != 0:
            # The refusal is the line results.tsv shows: it carries train.py's own last words.
            said = f" ({last[:200]})" if last else ""
            print(f"evaluation refused: train.py exited with status {code}{said}; see its output above",
                  file=sys.stderr, flush=True)
            return 1
        return _score_and_report(model_path, val_bytes, {
            "corpus_id": float(short_id), "train_process_seconds": round(train_seconds, 3),
        })
    finally:
        model_path.unlink(missing_ok=True)


def score_file(path: str) -> int:
    """Scores a model saved by hand (`python train.py` writes model.pt2)."""
    train_bytes, val_bytes = read_split("train"), read_split("val")
    _, short_id = corpus_id(train_bytes, val_bytes)
    return _score_and_report(Path(path), val_bytes, {"corpus_id": float(short_id)})


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "prepare"
    if command == "prepare":
        t0 = time.perf_counter()
        meta = build_cache()
        print(f"corpus: {meta['files']} files of the Python {meta['python']} standard library at {meta['stdlib']}")
        print(f"train: {meta['train_bytes']} bytes, val: {meta['val_bytes']} bytes")
        print(f"corpus sha256: {meta['corpus_sha256']} (corpus_id {meta['corpus_id']})")
        print(f"cache: {cache_dir()} ({time.perf_counter() - t0:.1f}s)")
        return 0
    if command == "evaluate":
        return evaluate()
    if command == "score" and len(argv) == 3:
        return score_file(argv[2])
    print("usage: python prepare.py [evaluate | score MODEL_PATH]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
