"""Ray without a running Ray: the optional import, the actor spec, and the deploy manifests."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autoswarm.worker.ray_pool import ActorSpec

ROOT = Path(__file__).resolve().parents[2]
RAY_PORTS = {6379, 8265, 10001, 52365, 8076}


def test_the_cli_and_a_volunteers_worker_never_import_ray():
    code = ("import sys, autoswarm.cli, worker.loop, worker.ray_pool, autoswarm.local_run; "
            "sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.parametrize(("spec", "flag"), [
    (ActorSpec(coordinator="nohost"), "--coordinator"),
    (ActorSpec(coordinator="h:1", gpus=1.5), "--gpus-per-worker"),
    (ActorSpec(coordinator="h:1", cpus=-1), "--cpus-per-worker"),
    (ActorSpec(coordinator="h:1", slots=0), "--slots"),
])
def test_actor_spec_names_the_flag_of_a_bad_value(spec, flag):
    with pytest.raises(ValueError, match=flag):
        spec.check()


def test_actor_spec_digest_changes_with_any_field_and_only_then():
    assert "asj_secret" not in repr(ActorSpec(coordinator="h:1", token="asj_secret")), "no token in logs"
    base = ActorSpec(coordinator="h:1")
    base.check()
    ActorSpec(coordinator="h:1", gpus=0.5).check()
    ActorSpec(coordinator="h:1", gpus=2).check()
    assert base.digest() == ActorSpec(coordinator="h:1").digest()
    others = [ActorSpec(coordinator="h:2"), ActorSpec(coordinator="h:1", gpus=1),
              ActorSpec(coordinator="h:1", cpus=2), ActorSpec(coordinator="h:1", mutators=("llm",)),
              ActorSpec(coordinator="h:1", slots=2), ActorSpec(coordinator="h:1", state_root="/x"),
              ActorSpec(coordinator="h:1", token="asj_x"), ActorSpec(coordinator="h:1", ca_pem="PEM")]
    assert len({base.digest(), *(o.digest() for o in others)}) == len(others) + 1


def test_cluster_launcher_config_is_valid_and_exposes_the_coordinator_port_only():
    config = yaml.safe_load((ROOT / "deploy/ray/cluster.yaml").read_text())
    opened = {(p["FromPort"], p["ToPort"]) for p in config["provider"]["security_group"]["IpPermissions"]}
    assert opened == {(50051, 50051)}
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    ray_spec = importlib.util.find_spec("ray")
    if ray_spec is not None:  # Ray's own schema, as `ray up` checks it
        # Read, not imported: Ray fixes at import time which addresses a local Ray listens on,
        # and tests/integration/test_ray.py must be the first to import it.
        import jsonschema

        schema_file = Path(ray_spec.origin).parent / "autoscaler/ray-schema.json"
        jsonschema.validate(config, json.loads(schema_file.read_text()))


def _k8s(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy/k8s" / name).read_text()) if d]


def test_kuberay_cluster_keeps_ray_on_the_cluster_network():
    raycluster, policy = _k8s("raycluster.yaml")
    assert raycluster["kind"] == "RayCluster" and policy["kind"] == "NetworkPolicy"
    head = raycluster["spec"]["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    cluster_label = {"ray.io/cluster": raycluster["metadata"]["name"]}
    assert policy["spec"]["podSelector"]["matchLabels"] == cluster_label
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": cluster_label}}]}]
    containers = [head["template"]["spec"]["containers"][0]] + [
        g["template"]["spec"]["containers"][0] for g in raycluster["spec"]["workerGroupSpecs"]]
    for container in containers:
        # Our probes: KubeRay's defaults call wget, which the worker image lacks.
        assert container["readinessProbe"]["exec"]["command"][0] == "python"
        assert not any("hostPort" in port for port in container.get("ports", []))


def test_coordinator_manifests_keep_one_writer_on_a_persistent_volume_and_publish_no_ray_port():
    docs = {d["kind"]: d for d in _k8s("coordinator.yaml")}
    deployment = docs["Deployment"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"]["type"] == "Recreate"
    volume = deployment["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert volume == docs["PersistentVolumeClaim"]["metadata"]["name"]
    ports = {p["port"] for p in docs["Service"]["spec"]["ports"]}
    assert 50051 in ports and not ports & RAY_PORTS
    kustomization = _k8s("kustomization.yaml")[0]
    assert all((ROOT / "deploy/k8s" / r).exists() for r in kustomization["resources"])
