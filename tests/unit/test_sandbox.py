"""The sandbox: limits and isolation on real processes, and its pure parts.

Every command here really runs through the trampoline (and bubblewrap where marked). Tests that
need bubblewrap skip only when it is not installed at all, and never in CI, which installs it. The process cap is
exercised with bubblewrap, because without it the kernel does not apply RLIMIT_NPROC to root
(what CI runs as) — which `describe()` must then say.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from swarm import Listener, needs, processes_with, wait_for
from autoswarm.worker.runner import CommandOutcome, run_command
from autoswarm.worker.sandbox import (
    Access,
    ResourceLimits,
    Sandbox,
    SandboxError,
    bwrap_arguments,
    configure,
    limit_hit,
    sandbox_environment,
)

HAS_BWRAP = shutil.which("bwrap") is not None
needs_bwrap = needs(HAS_BWRAP, "bubblewrap (bwrap) is not installed; CI installs it")
MODES = ["none", pytest.param("bwrap", marks=needs_bwrap)]
LIMITS = ResourceLimits(memory_bytes=256 << 20, max_processes=64, file_size_bytes=1 << 20)


@pytest.fixture(scope="module")
def sandboxes() -> dict[str, Sandbox]:
    made = {"none": configure("none", LIMITS)}
    if HAS_BWRAP or os.environ.get("CI"):
        made["bwrap"] = configure("bwrap", LIMITS)  # must work where it is installed: no silent fallback
    return made


def run(sandbox: Sandbox, code: str, workdir: Path, *, timeout: float = 60, access: Access | None = None,
        env: dict[str, str] | None = None, argv: list[str] | None = None) -> CommandOutcome:
    workdir.mkdir(parents=True, exist_ok=True)
    access = access or Access(workdir=workdir)
    sandbox.make_writable(workdir)
    prepared = sandbox.prepare(argv or [sys.executable, "-c", textwrap.dedent(code)], access,
                               env if env is not None else os.environ, timeout)
    return run_command(list(prepared.argv), cwd=workdir, env=prepared.env, timeout_seconds=timeout,
                       log_path=workdir.parent / f"{uuid.uuid4().hex}.log", kill_grace_seconds=0.5)


def family(marker: str) -> str:
    """A command that starts a child, a grandchild and a daemon (own session), says so, then hangs."""
    return f"""
        import os, subprocess, sys, time
        grandchild = "import time; open('grandchild.up', 'w').close(); time.sleep(300)  # {marker}"
        daemon = "import os, time; os.setsid(); open('daemon.up', 'w').close(); time.sleep(300)  # {marker}"
        subprocess.Popen([sys.executable, "-c", daemon])
        subprocess.Popen([sys.executable, "-c",
                          "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', %r]); "
                          "time.sleep(300)  # {marker}" % grandchild])
        while not (os.path.exists("daemon.up") and os.path.exists("grandchild.up")):
            time.sleep(0.05)
        print("family up", flush=True)
        time.sleep(300)
        """


# -- limits, with and without bubblewrap -----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_memory_hog_is_stopped_by_the_memory_limit(mode, sandboxes, tmp_path):
    outcome = run(sandboxes[mode], """
        chunks = []
        while True:
            chunks.append(b"x" * (16 << 20))  # written memory, not just reserved
        """, tmp_path / "work")

    assert outcome.returncode not in (0, None)
    assert "MemoryError" in outcome.output_tail
    assert limit_hit(outcome.returncode, outcome.timed_out, outcome.output_tail).startswith("the memory limit")


@needs_bwrap
def test_fork_bomb_is_contained_per_sandbox_and_leaves_the_caller_unharmed(sandboxes, tmp_path):
    sandbox = sandboxes["bwrap"]
    assert sandbox.process_cap == "per sandbox"
    outcome = run(sandbox, """
        import os
        while True:
            os.fork()
        """, tmp_path / "bomb", timeout=120)

    assert not outcome.timed_out, "the bomb must hit the cap, not the timeout"
    assert "Resource temporarily unavailable" in outcome.output_tail
    assert limit_hit(outcome.returncode, outcome.timed_out, outcome.output_tail).startswith("the process limit")
    after = run(sandbox, "print('still fine')", tmp_path / "after")
    assert after.returncode == 0 and "still fine" in after.output_tail


def test_without_bubblewrap_root_is_told_that_the_process_cap_is_off(sandboxes):
    sandbox = sandboxes["none"]
    text = "\n".join(sandbox.describe())
    assert "isolation: NONE" in text
    if os.geteuid() == 0:
        assert sandbox.process_cap.startswith("off")
        assert "processes 64 (off" in text
    else:
        assert sandbox.process_cap in ("per sandbox", "per user (no user namespaces)")


@pytest.mark.parametrize("mode", MODES)
def test_file_size_limit_stops_a_python_writer_and_a_shell_writer(mode, sandboxes, tmp_path):
    python = run(sandboxes[mode], """
        with open("big", "wb") as f:
            f.write(b"x" * (2 << 20))
        """, tmp_path / "py")
    shell = run(sandboxes[mode], "", tmp_path / "sh", argv=["sh", "-c", "head -c 2097152 /dev/zero > big"])

    assert "File too large" in python.output_tail  # Python ignores SIGXFSZ and gets EFBIG instead
    assert limit_hit(python.returncode, python.timed_out, python.output_tail).startswith("the file size limit")
    assert limit_hit(shell.returncode, shell.timed_out, shell.output_tail) == "the file size limit (SIGXFSZ)"
    assert (tmp_path / "sh" / "big").stat().st_size <= 1 << 20


@pytest.mark.parametrize("mode", MODES)
def test_exit_status_and_signals_pass_through_the_trampoline(mode, sandboxes, tmp_path):
    exited = run(sandboxes[mode], "import sys; print('bye'); sys.exit(3)", tmp_path / "a")
    killed = run(sandboxes[mode], "import os, signal; os.kill(os.getpid(), signal.SIGUSR1)", tmp_path / "b")
    missing = run(sandboxes[mode], "", tmp_path / "c", argv=["no-such-program-autoswarm"])

    assert exited.returncode == 3 and "bye" in exited.output_tail
    assert killed.returncode in (-signal.SIGUSR1, 128 + signal.SIGUSR1)
    assert missing.returncode == 127 and "no-such-program-autoswarm" in missing.output_tail
    assert limit_hit(killed.returncode, False, killed.output_tail) is None


@pytest.mark.parametrize("mode", MODES)
def test_cpu_affinity_is_applied(mode, sandboxes, tmp_path):
    pinned = sandboxes[mode].with_limits(cpus=(min(os.sched_getaffinity(0)),))
    outcome = run(pinned, "import os; print('cpus', sorted(os.sched_getaffinity(0)))", tmp_path / "w")
    assert f"cpus [{min(os.sched_getaffinity(0))}]" in outcome.output_tail


# -- no process outlives its command ---------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_stopped_command_leaves_no_process_behind(mode, sandboxes, tmp_path):
    # Stopped by `cancel` once it is fully up: the same group kill as at the timeout, without
    # guessing how long three Python start-ups take on a loaded machine.
    marker = f"autoswarm-test-{uuid.uuid4().hex}"
    work, log = tmp_path / "w", tmp_path / "command.log"
    work.mkdir()
    sandbox = sandboxes[mode]
    sandbox.make_writable(work)
    prepared = sandbox.prepare([sys.executable, "-c", textwrap.dedent(family(marker))], Access(workdir=work),
                               os.environ, 300)
    cancel = threading.Event()
    outcomes: list[CommandOutcome] = []
    runner = threading.Thread(target=lambda: outcomes.append(run_command(
        list(prepared.argv), cwd=work, env=prepared.env, timeout_seconds=300, log_path=log, cancel=cancel,
        kill_grace_seconds=0.5)))
    runner.start()
    try:
        wait_for(lambda: "family up" in _read(log) or not runner.is_alive(), 60, what="the command's family")
        assert len(processes_with(marker)) >= 4, "the command, its child, grandchild and daemon run"
    finally:
        cancel.set()
        runner.join(30)

    assert outcomes and outcomes[0].cancelled
    wait_for(lambda: not processes_with(marker), 15, what=f"no process left of {marker}")


# "mac-like": no prctl (no parent-death signal, no subreaper), /proc, pidfd, waitid or bubblewrap.
MAC_LIKE = ("prctl", "proc", "affinity", "user_namespaces", "pidfd", "kqueue", "waitid", "bwrap")


@pytest.mark.parametrize("mode", [*MODES, "mac-like"])
def test_command_tree_dies_with_the_worker(mode, tmp_path):
    marker = f"autoswarm-test-{uuid.uuid4().hex}"
    (tmp_path / "command.py").write_text(textwrap.dedent(family(marker)))
    platform = (f"dataclasses.replace(current_platform().without(*{MAC_LIKE!r}), system='Darwin')"
                if mode == "mac-like" else "current_platform()")
    fake_worker = textwrap.dedent(f"""
        import dataclasses, os, sys
        from pathlib import Path
        from autoswarm.worker.platforms import current_platform
        from autoswarm.worker.runner import run_command
        from autoswarm.worker.sandbox import Access, configure
        work = Path({str(tmp_path / "w")!r}); work.mkdir()
        platform = {platform}
        sandbox = configure({"auto" if mode == "mac-like" else mode!r}, platform=platform)
        sandbox.make_writable(work)
        prepared = sandbox.prepare([sys.executable, {str(tmp_path / "command.py")!r}], Access(workdir=work,
                                   read_only=(Path({str(tmp_path / "command.py")!r}),)), os.environ, 300)
        run_command(list(prepared.argv), cwd=work, env=prepared.env, timeout_seconds=300,
                    log_path=Path({str(tmp_path / "command.log")!r}), platform=platform)
        """)
    worker = subprocess.Popen([sys.executable, "-c", fake_worker], start_new_session=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        wait_for(lambda: "family up" in _read(tmp_path / "command.log") or worker.poll() is not None, 60,
                 what="the command's family to start")
        assert worker.poll() is None, "the fake worker failed"
        assert len(processes_with(marker)) >= 3, "its child, grandchild and daemon run"
        worker.kill()  # SIGKILL: the worker gets no chance to clean up
        worker.wait()
        wait_for(lambda: not processes_with(marker), 15, what=f"no process left of {marker}")
    finally:
        if worker.poll() is None:
            worker.kill()
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# -- isolation (bubblewrap) -------------------------------------------------------------------


ESCAPE_ATTEMPTS = """
    import os, socket, sys
    port, outside, secret, data = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    def attempt(what, action):
        try:
            action()
            print(f"LEAK {what}", flush=True)
        except OSError as exc:
            print(f"blocked {what}: {exc}", flush=True)
    attempt("connect", lambda: socket.create_connection(("127.0.0.1", port), timeout=3))
    attempt("write-outside", lambda: open(outside, "w").write("escaped"))
    attempt("read-home", lambda: print(open(secret).read()))
    attempt("write-data", lambda: open(os.path.join(data, "poisoned"), "w").write("x"))
    print("data reads", open(os.path.join(data, "dataset.txt")).read(), flush=True)
    open("inside.txt", "w").write("fine")
    print("uid", os.getuid(), "home", os.environ.get("HOME"), "token", os.environ.get("SECRET_TOKEN"))
    """


@needs_bwrap
def test_bubblewrap_blocks_network_writes_outside_scratch_and_home(sandboxes, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text("the volunteer's secret")
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.txt").write_text("prepared-by-setup")
    work = tmp_path / "scratch" / "lease"
    listener = Listener()
    try:
        env = {**os.environ, "HOME": str(home), "SECRET_TOKEN": "hunter2"}
        outcome = run(sandboxes["bwrap"], "", work, env=env, access=Access(workdir=work, read_only=(data,)),
                      argv=[sys.executable, "-c", textwrap.dedent(ESCAPE_ATTEMPTS), str(listener.port),
                            str(tmp_path / "outside.txt"), str(home / "secret.txt"), str(data)])
    finally:
        listener.close()

    log = outcome.output_tail
    assert outcome.returncode == 0, log
    assert "LEAK" not in log
    assert listener.accepted == 0, "the evaluation reached a loopback listener"
    assert not (tmp_path / "outside.txt").exists()
    assert not (data / "poisoned").exists()
    assert "data reads prepared-by-setup" in log, "the study's data stays readable"
    assert (work / "inside.txt").read_text() == "fine", "the scratch dir must stay writable"
    assert "the volunteer's secret" not in log
    expected_uid = 65534 if os.geteuid() == 0 else os.getuid()
    assert f"uid {expected_uid} home /tmp token None" in log


@needs_bwrap
def test_bubblewrap_network_can_be_allowed_for_setup(sandboxes, tmp_path):
    listener = Listener()
    try:
        outcome = run(sandboxes["bwrap"], "", tmp_path / "w", access=Access(workdir=tmp_path / "w", network=True),
                      argv=[sys.executable, "-c", "import socket, sys; socket.create_connection(('127.0.0.1', "
                            "int(sys.argv[1])), timeout=5).close(); print('connected')", str(listener.port)])
        wait_for(lambda: listener.accepted == 1, 10, what="the connection")
    finally:
        listener.close()
    assert outcome.returncode == 0 and "connected" in outcome.output_tail


# -- configuration ---------------------------------------------------------------------------


def test_configure_explains_a_missing_bubblewrap(tmp_path):
    with pytest.raises(SandboxError, match="bubblewrap is not installed.*--sandbox none"):
        configure("bwrap", bwrap=str(tmp_path / "no-bwrap"))
    fallback = configure("auto", bwrap=str(tmp_path / "no-bwrap"))
    assert fallback.isolation == "none" and "not installed" in fallback.reason
    assert "not installed" in fallback.describe()[0]
    with pytest.raises(SandboxError, match="unknown mode 'chroot'"):
        configure("chroot")


# -- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(("returncode", "timed_out", "tail", "expected"), [
    (0, False, "MemoryError", None),
    (1, False, "Traceback...\nValueError: bad", None),
    (None, True, "still running", None),
    (-signal.SIGXCPU, False, "", "the CPU time limit (SIGXCPU)"),
    (128 + signal.SIGXCPU, False, "", "the CPU time limit (SIGXCPU)"),
    (128 + signal.SIGXFSZ, False, "", "the file size limit (SIGXFSZ)"),
    (-signal.SIGKILL, False, "", "a SIGKILL it did not get from us: most likely the kernel's out-of-memory killer"),
    (1, False, "Traceback\nMemoryError\n", "the memory limit (MemoryError)"),
    (1, False, "torch.OutOfMemoryError: CUDA out of memory. Tried", "the memory limit (out of memory)"),
    (1, False, "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 8.00 GiB",
     "the memory limit (unable to allocate)"),
    (1, False, "BlockingIOError: [Errno 11] Resource temporarily unavailable",
     "the process limit (fork refused: resource temporarily unavailable)"),
    (None, True, "bash: fork: retry: Resource temporarily unavailable", "the process limit (fork refused)"),
    (1, False, "RuntimeError: can't start new thread", "the process limit (cannot start a thread)"),
    (1, False, "OSError: [Errno 27] File too large", "the file size limit (file too large)"),
])
def test_limit_hit_reads_how_a_command_ended(returncode, timed_out, tail, expected):
    assert limit_hit(returncode, timed_out, tail) == expected


def test_sandbox_environment_keeps_what_programs_need_and_drops_secrets():
    env = sandbox_environment({"PATH": "/usr/bin", "LC_ALL": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "1",
                               "AUTOSWARM_TIME_BUDGET": "5", "OPENAI_API_KEY": "sk-x", "AWS_SECRET_ACCESS_KEY": "y",
                               "HOME": "/home/volunteer", "SSH_AUTH_SOCK": "/run/agent"}, home="/data/home")
    assert env == {"PATH": "/usr/bin", "LC_ALL": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "1",
                   "AUTOSWARM_TIME_BUDGET": "5", "HOME": "/data/home", "TMPDIR": "/tmp"}


def _binds(args: list[str]) -> list[tuple[str, str]]:
    return [(args[i], args[i + 1]) for i in range(len(args) - 1) if args[i] in ("--bind", "--ro-bind", "--dir")]


def test_bwrap_arguments_mount_only_what_the_command_may_touch():
    work = Path("/srv/autoswarm/scratch/slot-0/l-1")
    data = Path("/srv/autoswarm/data/tiny")
    home = Path("/srv/autoswarm/homes/tiny")
    args = bwrap_arguments(Access(workdir=work, read_only=(data,), home=home),
                           [Path("/usr/lib/python3"), Path("/opt2/python"), data], tmp_bytes=1 << 20, size_option=True)
    binds = _binds(args)

    assert "--unshare-net" in args and "--die-with-parent" in args and "--unshare-pid" in args
    assert ("--bind", str(work)) in binds and ("--bind", str(home)) in binds
    assert ("--ro-bind", str(data)) in binds and ("--ro-bind", "/opt2/python") in binds
    assert ("--ro-bind", "/usr/lib/python3") not in binds, "already visible through /usr"
    assert not any(path == "/srv/autoswarm" and kind != "--dir" for kind, path in binds), "parents are not mounted"
    dirs = [path for kind, path in binds if kind == "--dir"]
    assert dirs.index("/srv") < dirs.index("/srv/autoswarm") < dirs.index("/srv/autoswarm/scratch")
    assert args[args.index("--chdir") + 1] == str(work)
    assert args[args.index("--tmpfs") - 2:args.index("--tmpfs")] == ["--size", str(1 << 20)]
    assert "--unshare-net" not in bwrap_arguments(Access(workdir=work, network=True), [])


def test_only_setup_gets_the_network_and_only_when_the_study_asks(tmp_path):
    from autoswarm.study import StudyError, parse_study_text
    from autoswarm.worker.execute import ExecutionContext, _access

    text = ('name = "s"\ntarget = "t.py"\nevaluate = "python t.py"\nmetric = "m"\ndirection = "minimize"\n'
            'timeout = 10\n')
    with pytest.raises(StudyError, match="setup_network: expected true or false, got 'yes'"):
        parse_study_text(text + 'setup_network = "yes"\n')
    study = parse_study_text(text + "setup_network = true\n")
    context = ExecutionContext(cache=None, scratch_root=tmp_path / "scratch", data_root=tmp_path / "data")
    env = {"AUTOSWARM_CACHE_DIR": str(tmp_path / "data" / "s")}
    setup = _access(context, study, env, tmp_path / "bundle", setup=True)
    evaluation = _access(context, study, env, tmp_path / "scratch", setup=False)
    assert setup.network and not evaluation.network
    assert not parse_study_text(text).setup_network
    assert setup.writable == (tmp_path / "data" / "s",) and evaluation.read_only == (tmp_path / "data" / "s",)
    assert setup.home == evaluation.home == tmp_path / "homes" / "s"


# -- GPU device nodes of every vendor ----------------------------------------------------------


def _fake_devices(root: Path) -> list[str]:
    """Device nodes as an AMD box (kfd, render nodes), an NVIDIA box and WSL2 have them, as plain files."""
    names = ["dev/kfd", "dev/dri/card0", "dev/dri/renderD128", "dev/nvidia0", "dev/nvidiactl", "dev/dxg"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    return ["/" + name for name in names]


def test_gpu_slots_get_every_vendors_device_nodes_and_cpu_slots_none(tmp_path):
    from autoswarm.worker.sandbox import gpu_device_nodes

    root = tmp_path / "host"
    _fake_devices(root)
    found = dict((inside, source) for source, inside in gpu_device_nodes(root))
    assert set(found) == {"/dev/kfd", "/dev/dri", "/dev/nvidia0", "/dev/nvidiactl", "/dev/dxg"}
    assert found["/dev/kfd"] == str(root / "dev" / "kfd")
    gpu = bwrap_arguments(Access(workdir=tmp_path, gpus=True), [], device_root=root)
    cpu = bwrap_arguments(Access(workdir=tmp_path, gpus=False), [], device_root=root)
    assert ("--dev-bind", str(root / "dev" / "kfd"), "/dev/kfd") in zip(gpu, gpu[1:], gpu[2:])
    assert ("--dev-bind", str(root / "dev" / "dri"), "/dev/dri") in zip(gpu, gpu[1:], gpu[2:])
    assert "--dev-bind" not in cpu


@needs_bwrap
def test_an_evaluation_in_bubblewrap_sees_the_amd_device_nodes_of_its_gpu_slot(tmp_path):
    root, work = tmp_path / "host", tmp_path / "work"
    expected = _fake_devices(root)
    work.mkdir()
    args = bwrap_arguments(Access(workdir=work, gpus=True), [Path(sys.prefix), Path(sys.base_prefix)],
                           device_root=root)
    listing = subprocess.run(["bwrap", *args, "--", "sh", "-c", "cat /dev/kfd; echo; ls /dev/dri"], capture_output=True,
                             text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "dev/kfd" in listing.stdout and "renderD128" in listing.stdout and "card0" in listing.stdout
    assert len(expected) == 6


def test_a_root_worker_without_bubblewrap_says_its_evaluations_run_as_root():
    text = "\n".join(configure("none").describe())
    assert ("evaluations run as root too" in text) == (os.geteuid() == 0)
    assert "evaluations run as root too" not in "\n".join(replace(configure("none"), isolation="bwrap").describe())


def test_what_a_command_may_read_of_the_machine(tmp_path):
    none = configure("none")
    (tmp_path / "toolchain").mkdir()
    assert none.shows(tmp_path / "token") and none.shows(Path("/etc/hostname"))
    boxed = replace(none, isolation="bwrap", read_only=(tmp_path / "toolchain",))
    assert boxed.shows(Path("/etc/autoswarm/join-token")) and boxed.shows(Path("/opt/x"))
    assert boxed.shows(tmp_path / "toolchain" / "bin" / "cc") and boxed.shows(Path(sys.prefix) / "lib")
    assert not boxed.shows(tmp_path / "token") and not boxed.shows(Path("/var/lib/autoswarm/identity.json"))
