"""The worker's own secrets: a hostile evaluation run with `--sandbox none` (and, to compare,
with bubblewrap) by real workers over loopback, as an unprivileged user (root would bypass every
check here, so a test run as root starts the workers as uid 65534), tries every way a same-user
process has to reach the tokens the workers were started with:

- `/proc/<pid>/environ`, `cmdline`, `maps` + `mem`, `fd/` and `task/*/environ` of every
  worker process on the machine (its own worker and the others, all of the same user);
- the worker's identity file, and (as root) the join token's file it was handed on stdin.

The workers got their join tokens every way the CLI offers: in `AUTOSWARM_JOIN_TOKEN` (with an
admin token in `AUTOSWARM_TOKEN` and an API key beside), as `--token` and the global `--token`
on the command line, and with `--token-file -` on standard input. No join token, admin token or
key may reach the coordinator. Without a sandbox the worker's credential in identity.json *is*
readable by a same-user process: docs/security.md says so, and this test shows where it can be
found (the file) and where not (the process). With bubblewrap the evaluation sees no worker
process and none of these files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoswarm.control import ControlClient
from swarm import CoordinatorProcess, db_rows as rows, needs, wait_for, write_study

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not sys.platform.startswith("linux"),
                                                          reason="/proc is Linux's")]

AUTH = ("--auth", "tokens", "--lease-factor", "1", "--lease-grace", "1", "--heartbeat-interval", "0.5")
NOBODY = 65534
API_KEY = "sk-planted-api-key-for-the-probe-0001"

# What a hostile study's evaluation does: everything a same-user process can try, printing what
# it finds that looks like a secret (autoswarm tokens have known prefixes; NAME=value pairs
# whose name says TOKEN or KEY), one line per place it looked.
PROBE = r'''
import json, os, re
SECRET = re.compile(rb"as[ajrw]_[A-Za-z0-9_-]{20,}|sk-planted[A-Za-z0-9-]*|[A-Z_]*(?:TOKEN|KEY)[A-Z_]*=[^\0\n]{8,}")
targets = json.load(open("targets.json"))
lines = []
def report(where, read):
    try:
        data = read()
    except OSError as exc:
        lines.append(f"{where}: refused ({type(exc).__name__})")
        return
    found = sorted({m.decode(errors="replace") for m in SECRET.findall(data)})
    lines.append(f"{where}: read {len(data)} bytes; secrets: {' '.join(found) or 'none'}")
def raw(path, limit=1 << 20):
    with open(path, "rb") as f:
        return f.read(limit)
def memory(pid):
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if perms.startswith("rw") and end - start <= 64 << 20:
                try:
                    mem.seek(start)
                    chunks.append(mem.read(end - start))
                except (OSError, OverflowError, ValueError):
                    pass
    return b"".join(chunks)
def fds(pid):
    out, refused = [], None
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}").encode())
            if fd == "0":
                out.append(raw(f"/proc/{pid}/fd/0", 4096))
        except OSError as exc:
            refused = exc
    if refused is not None and not out:
        raise refused   # the listing came through (a moment the kernel let it), not one link
    return b"\n".join(out)
workers = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            args = raw(f"/proc/{entry}/cmdline").split(b"\0")
        except OSError:
            continue
        # The workers of this swarm (the attacker learns their state directories from `ps`).
        if b"--state-dir" in args and args[args.index(b"--state-dir") + 1].startswith(targets["root"].encode()):
            workers.append(entry)
def parent(pid):
    try:
        return raw(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[1].decode()
    except (OSError, IndexError):
        return None
# A worker starting its own evaluation is, between fork and exec, a second process with the
# worker's command line: that child is not another worker.
workers = [pid for pid in workers if parent(pid) not in workers]
lines.append(f"workers seen: {len(workers)}")
for pid in sorted(workers):
    for name in ("environ", "cmdline"):
        report(f"pid {pid} {name}", lambda: raw(f"/proc/{pid}/{name}"))
    report(f"pid {pid} mem", lambda: memory(pid))
    report(f"pid {pid} fd", lambda: fds(pid))
    report(f"pid {pid} task environ", lambda: b"".join(raw(f"/proc/{pid}/task/{t}/environ")
                                                        for t in os.listdir(f"/proc/{pid}/task")))
for path in targets["files"]:
    report(f"file {path}", lambda: raw(path))
report("own environment", lambda: "\n".join(f"{k}={v}" for k, v in os.environ.items()).encode())
print("PROBE-BEGIN")
print("\n".join(lines))
print("PROBE-END")
print("score: 1")
'''


@dataclass
class Volunteer:
    """A worker subprocess started as the unprivileged user."""

    name: str
    state: Path
    proc: subprocess.Popen

    def log(self) -> str:
        return (self.state.parent / f"{self.name}.log").read_text(errors="replace")


def _private_dir(prefix: str) -> Path:
    """A directory the workers' user owns (tmp_path is root's own, which uid 65534 cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    return path


def _open_to_others(path: str) -> bool:
    """Whether a user of no group of ours can run `path`: every directory up to it searchable."""
    real = Path(os.path.realpath(path))
    return bool(real.stat().st_mode & 0o001) and all(p.stat().st_mode & 0o001 for p in real.parents)


def _unprivileged_python(where: Path) -> str:
    """An interpreter uid 65534 can run with this project importable.

    This one when it is open to others; else (a Python installed under root's home) a venv of
    the system's Python of the same version that loads this one's site-packages.
    """
    if os.geteuid() != 0 or _open_to_others(sys.executable):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if os.path.exists(candidate) and _open_to_others(candidate):
            venv = where / "venv"
            subprocess.run([candidate, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
            python = str(venv / "bin" / "python")
            site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip()
            ours = sysconfig.get_paths()["purelib"]
            Path(site, "autoswarm-tests.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
            return python
    reason = f"no {version} that uid {NOBODY} may run (this one is under a private directory)"
    if os.environ.get("CI"):   # CI has the system's Python: without one the test must fail, not vanish
        pytest.fail(reason)
    pytest.skip(reason)


def _start(root: Path, python: str, name: str, args: list[str], env: dict[str, str],
           stdin_text: str | None = None) -> Volunteer:
    state = root / name / "state"
    state.parent.mkdir()
    if os.geteuid() == 0:
        os.chown(state.parent, NOBODY, NOBODY)
    as_user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    with open(root / name / f"{name}.log", "wb") as log:
        proc = subprocess.Popen([python, "-m", "autoswarm", *args[:args.index("worker")], "worker",
                                 "--name", name, "--state-dir", str(state), *args[args.index("worker") + 1:]],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, env=env, cwd="/",
                                start_new_session=True, **as_user)
    assert proc.stdin is not None
    if stdin_text is not None:
        proc.stdin.write(stdin_text.encode())
    proc.stdin.close()
    return Volunteer(name, state, proc)


@dataclass
class Probed:
    db: Path
    tails: dict[str, str]          # worker name -> the probe's report from its first evaluation
    join: dict[str, str]           # worker name -> its join token
    admin: str
    volunteers: list[Volunteer]
    token_file: Path | None
    sandbox: str


def _bwrap_works_unprivileged() -> bool:
    if shutil.which("bwrap") is None:
        return False
    as_user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    try:
        return subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-pid", "true"], capture_output=True,
                              cwd="/", timeout=30, **as_user).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="module", params=["none", pytest.param("bwrap", marks=needs(
    _bwrap_works_unprivileged(), "bubblewrap is missing or refused to an unprivileged user here"))])
def probed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probed]:
    sandbox = request.param
    root = tmp_path_factory.mktemp(f"secrets-{sandbox}")
    coordinator = CoordinatorProcess(db=root / "swarm.db", log=root / "coordinator.log",
                                     args=(*AUTH, "--admin-token-file", str(root / "admin.token")))
    workers_root = _private_dir("autoswarm-secrets-")
    volunteers: list[Volunteer] = []
    try:
        python = _unprivileged_python(workers_root)
        coordinator.start()
        admin = (root / "admin.token").read_text().strip()
        with ControlClient(coordinator.address, token=admin) as control:
            join = {name: control.create_token(name).token for name in ("by-env", "by-flag", "by-stdin")}
            # A file only root may read, handed over on stdin as `--token-file - < file` does.
            token_file = None
            if os.geteuid() == 0:
                token_file = root / "join.token"
                token_file.write_text(join["by-stdin"] + "\n")
                token_file.chmod(0o600)
            study = write_study(root / "probe", name="probe", timeout=60)
            text = (study / "study.toml").read_text()
            (study / "study.toml").write_text(text.replace('evaluate = "python target.py"',
                                                           f'evaluate = "{python} probe.py"'))
            (study / "probe.py").write_text(PROBE)
            identities = [str(workers_root / name / "state" / "identity.json") for name in join]
            (study / "targets.json").write_text(json.dumps({
                "root": str(workers_root), "files": identities + ([str(token_file)] if token_file else [])}))
            control.add_study(study)
        base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        common = ["--coordinator", coordinator.address, "--sandbox", sandbox, "--no-pipeline"]
        volunteers.append(_start(workers_root, python, "by-env", ["worker", *common], {
            **base_env, "AUTOSWARM_JOIN_TOKEN": join["by-env"], "AUTOSWARM_TOKEN": admin, "OPENAI_API_KEY": API_KEY}))
        volunteers.append(_start(workers_root, python, "by-flag", ["--token", admin, "worker", *common, "--token",
                                                           join["by-flag"]], base_env))
        volunteers.append(_start(workers_root, python, "by-stdin", ["worker", *common, "--token-file", "-"], base_env,
                                 stdin_text=join["by-stdin"] + "\n"))

        def first_reports() -> dict[str, str] | None:
            found: dict[str, str] = {}
            for name, tail in rows(coordinator.db, "SELECT worker_name, log_tail FROM results WHERE study='probe' "
                                                   "AND log_tail LIKE '%PROBE-END%' ORDER BY created"):
                found.setdefault(name, tail)
            for v in volunteers:
                assert v.proc.poll() is None, f"worker {v.name} exited:\n{v.log()[-3000:]}"
            return found if len(found) == len(volunteers) else None

        tails = wait_for(first_reports, 120, interval=0.5, what="an evaluation on each of the three workers")
        yield Probed(coordinator.db, tails, join, admin, volunteers, token_file, sandbox)
    finally:
        for v in volunteers:
            if v.proc.poll() is None:
                os.killpg(v.proc.pid, 9)
                v.proc.wait()
        coordinator.kill()
        shutil.rmtree(workers_root, ignore_errors=True)


def _probe_lines(tail: str) -> list[str]:
    return tail.split("PROBE-BEGIN", 1)[1].split("PROBE-END", 1)[0].strip().splitlines()


def test_no_join_token_admin_token_or_key_reaches_the_coordinator(probed):
    stored = b"".join(p.read_bytes() for p in probed.db.parent.glob(probed.db.name + "*"))
    for secret in (*probed.join.values(), probed.admin, API_KEY):
        assert secret.encode() not in stored, "a token the worker was given reached the coordinator"
    for tail in probed.tails.values():
        for secret in (*probed.join.values(), probed.admin, API_KEY):
            assert secret not in tail


def test_the_workers_processes_are_closed_to_an_evaluation_of_the_same_user(probed):
    for name, tail in probed.tails.items():
        lines = _probe_lines(tail)
        if probed.sandbox == "bwrap":
            assert "workers seen: 0" in lines, "in its own PID namespace an evaluation sees no worker"
            continue
        assert "workers seen: 3" in lines, (name, lines)
        process = [line for line in lines if line.startswith("pid ")]
        assert len(process) == 3 * 5, lines
        for line in process:
            where = line.split(":", 1)[0]
            if where.endswith("cmdline"):
                # The command line is world-readable (ps): the worker hid its tokens in it at start.
                assert line.endswith("secrets: none"), line
                continue
            # environ, mem, fd and the threads' environ are closed: the worker is not dumpable.
            assert ": refused (PermissionError)" in line, line
        own = next(line for line in lines if line.startswith("own environment"))
        assert own.endswith("secrets: none"), own


def test_which_files_an_evaluation_reads_another_users_token_file_never(probed):
    for name, tail in probed.tails.items():
        lines = _probe_lines(tail)
        files = {line.split(":", 1)[0]: line for line in lines if line.startswith("file ")}
        if probed.sandbox == "bwrap":
            # Neither the state directory nor the token file is mounted in the sandbox.
            assert len(files) == (4 if probed.token_file else 3)
            assert all(line.endswith(": refused (FileNotFoundError)") for line in files.values()), files
            assert "asw_" not in tail
            continue
        if probed.token_file is not None:
            token_line = next(line for where, line in files.items() if where.endswith("/join.token"))
            assert ": refused (PermissionError)" in token_line, token_line
        # Same user, no sandbox: the worker's credential can be read from its identity file
        # (docs/security.md, "The worker's own secrets"); only a worker credential, never a join token.
        identities = {where: line for where, line in files.items() if where.endswith("/identity.json")}
        assert len(identities) == 3
        own = next(line for where, line in identities.items() if f"/{name}/state/" in where)
        assert "secrets: asw_" in own, own
        for line in identities.values():
            # Another worker may not have registered yet when this evaluation ran.
            assert "refused (FileNotFoundError)" in line or all(
                secret.startswith("asw_") for secret in line.split("secrets: ", 1)[1].split()), line


def test_each_worker_says_what_protects_its_own_secrets(probed):
    for v in probed.volunteers:
        log = v.log()
        assert "worker process: not dumpable" in log, log[-3000:]
        for secret in (*probed.join.values(), probed.admin, API_KEY):
            assert secret not in log
    flag = next(v for v in probed.volunteers if v.name == "by-flag").log()
    assert "--token was given on the command line" in flag
    for v in probed.volunteers:  # what `ps` shows any user of the machine
        args = Path(f"/proc/{v.proc.pid}/cmdline").read_text()
        assert "--state-dir" in args and all(secret not in args for secret in (*probed.join.values(), probed.admin))
