"""The distribution as PyPI would get it: built with `python -m build`, checked by twine,
installed into a clean virtual environment where it brings no top-level `coordinator` or
`worker` module and `autoswarm --help` runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


# The clean environment's processes must not see this checkout through PYTHONPATH.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, timeout=300, env=CLEAN_ENV)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.timeout(400)
def test_the_wheel_builds_passes_twine_and_installs_without_generic_top_level_modules(tmp_path):
    # Build from a copy of the files git knows, so the checkout gets no build/ of its own.
    src = tmp_path / "src"
    listed = _run("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=ROOT).stdout.split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path / "dist"
    built = _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src))
    assert "deprecated" not in (built.stdout + built.stderr).lower().replace("byte-compiling", "")
    wheel, = dist.glob("*.whl")
    sdist, = dist.glob("*.tar.gz")
    checked = _run(sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist))
    assert checked.stdout.count("PASSED") == 2
    assert {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()} == \
        {"autoswarm", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel))
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    assert sorted(p.name for p in site.iterdir() if p.name in ("coordinator", "worker")) == []
    # The dependencies (grpcio, typer...) come from this test's environment, after the wheel's own files.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = ("import importlib.util as u, autoswarm, autoswarm.coordinator.server, autoswarm.worker.loop; "
             "print(u.find_spec('coordinator'), u.find_spec('worker'), autoswarm.__file__)")
    found = _run(str(python), "-c", probe, cwd=tmp_path).stdout.split()
    assert found[:2] == ["None", "None"], "no top-level coordinator or worker module"
    assert found[2].startswith(str(site)), "the package imported is the installed wheel"
    helped = _run(str(venv / "bin" / "autoswarm"), "--help", cwd=tmp_path)
    assert "autoresearch on a swarm" in helped.stdout
