"""Every volunteer's machine: the worker on systems that lack Linux's facilities.

Nothing here is skipped on Linux: each platform branch runs by taking facilities away through
the code's own seam (`Platform.without`), so the fallbacks a Mac (no prctl, /proc, pidfd, waitid,
CPU affinity, user namespaces, bubblewrap) or a Windows Python (no `resource`) takes are the
ones exercised, with the real runner, the real trampoline and a real coordinator.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swarm import processes_with, wait_for, write_study
from autoswarm.cli import app
from autoswarm.worker import platforms
from autoswarm.worker.accelerators import parse_mac
from autoswarm.worker.donation import DonationError
from autoswarm.worker.hardware import GpuInfo, HardwareInfo
from autoswarm.worker.loop import Worker, WorkerOptions
from autoswarm.worker.platforms import Platform, current_platform, describe_gaps, native_refusal
from autoswarm.worker.runner import ExitWatch, run_command

HERE = current_platform()
MAC_LIKE = ("prctl", "proc", "affinity", "user_namespaces", "pidfd", "kqueue", "waitid", "bwrap")

# Each mode: the facilities taken away, and what the start-up lines must then say.
MODES = {
    "no-prctl": (("prctl", "bwrap"), ["no child subreaper or parent-death signal (prctl)",
                                      "noticed by polling; processes that leave the process group"]),
    "no-pidfd": (("pidfd", "kqueue", "waitid"), ["no pidfd or kqueue", "no waitid(WNOWAIT)"]),
    "no-bubblewrap": (("bwrap",), ["isolation: NONE", "no bubblewrap on this system"]),
    # Windows' Python has no `resource`, and no bubblewrap either.
    "no-resource": (("resource", "bwrap"), ["memory: no cap (this system cannot set it)", "isolation: NONE",
                                            "no rlimits (no `resource` module)",
                                            "file size: no cap (this system cannot set it)"]),
    "macos-like": (MAC_LIKE, ["bubblewrap exists only on Linux, and this is Darwin", "no CPU affinity",
                              "no child subreaper", "(set, but macOS does not reliably enforce it)"]),
}


def fake(mode: str) -> Platform:
    names, _ = MODES[mode]
    platform = HERE.without(*names)
    return dataclasses.replace(platform, system="Darwin") if mode == "macos-like" else platform


# -- the worker loop, end to end, in every mode ------------------------------------------------


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_worker_loop_completes_tasks_and_says_what_is_missing(mode, tmp_path, start_coordinator, monkeypatch):
    marker = f"autoswarm-platform-{uuid.uuid4().hex}"
    # Secrets in the worker's environment never reach an evaluation, whatever the platform offers.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("AUTOSWARM_JOIN_TOKEN", "join-secret")
    # Each evaluation leaves a child behind in its process group: the tree kill must get it in every mode.
    body = ("import os, subprocess, sys\n"
            "assert 'secret' not in repr(dict(os.environ)), 'a secret reached the evaluation'\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)  # {marker}'])\n"
            "print(f\"score: {-(X - 2.5) ** 2 - (Y - 7) ** 2}\")\n")
    study = write_study(tmp_path / "study", body=body)
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=2)
    options = WorkerOptions(coordinator=coordinator.address, state_dir=tmp_path / "state", name=f"w-{mode}",
                            slots=1, max_cpus=1, lease_wait_seconds=2.0, check_interval=0.5)
    worker = Worker(options, platform=fake(mode))
    banner = "\n".join(worker.describe_donation())
    for expected in MODES[mode][1]:
        assert expected in banner, f"{mode}: the start-up lines must say {expected!r}:\n{banner}"
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        # The baseline and an explore task: each one a full cycle of lease, run, report.
        status = wait_for(lambda: (s := coordinator.study("tiny")).evaluations >= 2 and s, 90,
                          what=f"two evaluations ({mode})")
    finally:
        worker.request_stop(immediate=True)
        thread.join(30)
    assert status.has_initial_metric and status.initial_metric == pytest.approx(-(1.0 - 2.5) ** 2 - (3 - 7) ** 2)
    assert worker.completed >= 2
    wait_for(lambda: not processes_with(marker), 15, what=f"no evaluation process left behind ({mode})")


# -- start-up lines ----------------------------------------------------------------------------


def test_nothing_missing_on_a_full_linux_adds_no_line():
    full = dataclasses.replace(HERE, system="Linux", pidfd=True, waitid=True, prctl=True, resource=True, proc=True,
                               affinity=True, user_namespaces=True, bwrap=True)
    assert describe_gaps(full) is None
    assert "no rlimits" in describe_gaps(full.without("resource"))
    # What the trampoline's probe found missing counts too, even if the worker saw it.
    assert "no CPU affinity" in describe_gaps(full, ["affinity"])


def test_a_mac_is_not_told_about_proc_which_is_no_protection():
    mac = dataclasses.replace(HERE.without(*MAC_LIKE), system="Darwin", kqueue=True)
    line = describe_gaps(mac)
    assert line.startswith("not available on this system (Darwin)")
    assert "/proc" not in line and "no pidfd or kqueue" not in line  # kqueue notices exits on a Mac
    assert "no child subreaper" in line and "no bubblewrap" in line


def test_unknown_facility_names_are_refused():
    with pytest.raises(ValueError, match="unknown platform facilities"):
        HERE.without("prctl", "seccomp")


# -- the runner's exit watch -------------------------------------------------------------------


def _sleeper(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def test_the_exit_watch_uses_a_pidfd_where_there_is_one_and_polls_otherwise():
    proc = _sleeper(0)
    try:
        with_pidfd = ExitWatch(proc, dataclasses.replace(HERE, pidfd=True))
        polling = ExitWatch(proc, HERE.without("pidfd", "kqueue"))
        assert with_pidfd.mechanism == ("pidfd" if hasattr(os, "pidfd_open") else "polling")
        assert polling.mechanism == "polling"
        wait_for(lambda: with_pidfd.exited(), 10, what="exit seen through waitid")
        assert proc.returncode is None, "waitid(WNOWAIT) must not reap"
        no_waitid = ExitWatch(proc, HERE.without("pidfd", "kqueue", "waitid"))
        wait_for(lambda: no_waitid.exited(), 10, what="exit seen by polling")
        assert proc.returncode == 0, "without waitid the child is reaped (and its status kept)"
        for watch in (with_pidfd, polling, no_waitid):
            watch.close()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("names", [("pidfd", "kqueue"), ("pidfd", "kqueue", "waitid")])
def test_without_pidfd_or_waitid_exit_codes_timeouts_and_tree_kills_still_hold(names, tmp_path):
    platform = HERE.without(*names)
    marker = f"autoswarm-runner-{uuid.uuid4().hex}"
    exited = run_command([sys.executable, "-c", "import sys; print('out'); sys.exit(4)"], cwd=tmp_path, env=os.environ,
                         timeout_seconds=30, log_path=tmp_path / "a.log", platform=platform)
    hung = run_command([sys.executable, "-c",
                        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                        f"'import time; time.sleep(120)  # {marker}']); print('up', flush=True); time.sleep(120)"],
                       cwd=tmp_path, env=os.environ, timeout_seconds=2, log_path=tmp_path / "b.log",
                       kill_grace_seconds=0.5, platform=platform)
    assert exited.returncode == 4 and "out" in exited.output_tail and not exited.timed_out
    assert hung.timed_out and hung.returncode is None
    wait_for(lambda: not processes_with(marker), 15, what="the whole tree killed at the timeout")


# -- Windows -----------------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["Windows", "CYGWIN_NT-10.0", "MINGW64_NT-10.0"])
def test_native_windows_is_refused_with_the_ways_that_work(system):
    advice = native_refusal(system)
    assert advice and "WSL2" in advice and "wsl --install" in advice and "deploy/worker/Dockerfile" in advice


@pytest.mark.parametrize("system", ["Linux", "Darwin", "FreeBSD"])
def test_posix_systems_are_not_refused(system):
    assert native_refusal(system) is None


def test_autoswarm_worker_on_windows_explains_and_exits_without_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr(platforms, "system_name", lambda: "Windows")
    result = CliRunner().invoke(app, ["worker", "--coordinator", "127.0.0.1:1", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "does not run natively on Windows" in result.output and "WSL2" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "identity.json").exists(), "nothing was started"


def test_the_windows_advice_points_at_files_that_exist():
    root = Path(__file__).resolve().parents[2]
    assert (root / "deploy" / "worker" / "Dockerfile").is_file()
    assert (root / "docs" / "platforms.md").is_file()


# -- a Mac's Metal GPU is what --gpus donates ----------------------------------------------------


def _mac_hardware() -> HardwareInfo:
    fixtures = Path(__file__).parent / "fixtures" / "macos"
    mac = parse_mac((fixtures / "m3_max_40core_macbook_pro.profile.json").read_text(),
                    (fixtures / "m3_max_40core_macbook_pro.sysctl.txt").read_text())
    gpus = tuple(GpuInfo(index=a.device, name=a.name, memory_bytes=a.memory_bytes, driver=a.driver, vendor=a.vendor,
                         device=a.device) for a in mac.gpus)
    return HardwareInfo(cpu_model=mac.chip, cpu_cores=mac.cpu_cores, memory_bytes=mac.memory_bytes, gpus=gpus,
                        platform="macOS-14.5-arm64-arm-64bit", python_version="3.12.4")


@pytest.mark.parametrize("gpus, slots, banner", [
    (None, [{"AUTOSWARM_GPU": "0"}], "GPUs 0"), ((0,), [{"AUTOSWARM_GPU": "0"}], "GPUs 0"),
    ((), [{"CUDA_VISIBLE_DEVICES": ""}], "GPUs none"),
])
def test_on_a_mac_gpus_means_the_metal_gpu(tmp_path, gpus, slots, banner):
    options = WorkerOptions(coordinator="127.0.0.1:1", state_dir=tmp_path / "state", gpus=gpus)
    worker = Worker(options, _mac_hardware(), platform=fake("macos-like"))
    assert worker.slot_envs() == slots
    assert banner in "\n".join(worker.describe_donation())


def test_on_a_mac_a_gpu_it_does_not_have_is_refused(tmp_path):
    options = WorkerOptions(coordinator="127.0.0.1:1", state_dir=tmp_path / "state", gpus=(1,))
    with pytest.raises(DonationError, match="no GPU 1"):
        Worker(options, _mac_hardware(), platform=fake("macos-like"))


# -- the trampoline without /proc and without prctl -----------------------------------------------


def test_without_proc_the_trampoline_finds_processes_with_ps():
    from autoswarm.worker import sandbox_exec

    with_proc, without_proc = sandbox_exec.facilities(), sandbox_exec.facilities(["proc"])
    assert with_proc["proc"] and not without_proc["proc"]
    family = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                               "print('up', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert family.stdout.readline().strip() == "up"
        seen_by_ps = set(sandbox_exec._descendants(os.getpid(), without_proc))
        seen_in_proc = set(sandbox_exec._descendants(os.getpid(), with_proc))
        assert family.pid in seen_by_ps and len(seen_by_ps & seen_in_proc) >= 2  # the child and its child
        assert sandbox_exec._user_tasks(os.getuid(), without_proc) >= 2
        assert sandbox_exec._user_tasks(4_242_424, without_proc) == 0  # a uid nobody runs as
    finally:
        for pid in sandbox_exec._descendants(family.pid, with_proc):
            os.kill(pid, 9)
        family.kill()
        family.wait()


# A worker killed mid-evaluation without prctl: tests/unit/test_sandbox.py's
# test_command_tree_dies_with_the_worker[mac-like].


def test_idle_only_says_what_it_cannot_watch_on_a_mac(tmp_path):
    from autoswarm.worker.donation import DonationPolicy

    options = WorkerOptions(coordinator="127.0.0.1:1", state_dir=tmp_path / "state",
                            donation=DonationPolicy(idle_only=True))
    banner = "\n".join(Worker(options, _mac_hardware(), platform=fake("macos-like")).describe_donation())
    assert "other programs' CPU use cannot be measured on this system (no /proc)" in banner
    assert "other programs' use of Apple GPUs is not watched" in banner
    plain = WorkerOptions(coordinator="127.0.0.1:1", state_dir=tmp_path / "state2")
    assert "--idle-only" not in "\n".join(Worker(plain, _mac_hardware(), platform=fake("macos-like")).describe_donation())
