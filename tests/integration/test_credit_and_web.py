"""Credit, the leaderboard and the coordinator's web page, against a real coordinator on loopback.

Scripted workers (real gRPC clients whose scores and evaluation times the test sets) join
with real join tokens: alice and carol (shown as "Carol C.") on a fast class (2 s an
evaluation), bob on a class three times slower (6 s), and mallory, who lies (and chose to be
anonymous). The web page is opened in Debian's headless
Chromium and its JSON API is checked against a schema per endpoint.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from autoswarm.control import ControlClient
from autoswarm.coordinator.auth import pseudonym
from autoswarm.v1 import common_pb2, worker_pb2
from scripted import ScriptedWorker, connect, run_round_robin, slots_score, slots_target, switch_a_slot, touch_the_note
from swarm import CoordinatorProcess, _descendants, free_port, needs, wait_for, write_study

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MALLORY = pseudonym("mallory")
FAST = ("--lease-factor", "1", "--lease-grace", "1", "--heartbeat-interval", "0.5", "--worker-rate", "0",
        "--web-refresh", "0")


def _admin(coordinator: CoordinatorProcess) -> str:
    return coordinator.db.with_name("admin.token").read_text().strip()


def _states(coordinator: CoordinatorProcess, token: str) -> dict[str, str]:
    with ControlClient(coordinator.address, timeout=10, token=token) as control:
        return {w.name: w.state for w in control.status().workers}


def _cli(coordinator: CoordinatorProcess, token: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "autoswarm", *args, "--coordinator", coordinator.address],
                          env={"AUTOSWARM_TOKEN": token, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _slots_study(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "study.toml").write_text(textwrap.dedent("""\
        name = "slots"
        target = "target.py"
        evaluate = "python target.py"
        metric = "score"
        direction = "maximize"
        time_budget = 60
        timeout = 120
        [acceptance]
        compare = "paired"
        quorum = 2
        """))
    (directory / "target.py").write_text(slots_target())
    return directory


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    """A coordinator whose web page needs a reader token, after a run of three honest workers and a liar."""
    tmp = tmp_path_factory.mktemp("credit")
    web_port = free_port()
    coordinator = CoordinatorProcess(db=tmp / "swarm.db", log=tmp / "coordinator.log", args=(
        *FAST, "--auth", "tokens", "--admin-token-file", str(tmp / "admin.token"), "--web-port", str(web_port),
        "--web-require-token")).start()
    admin = _admin(coordinator)
    tokens = {}
    for name, *options in (("alice", "--team", "Red Team"), ("bob", "--team", "Red Team"),
                           ("carol", "--team", "Blue", "--display-name", "Carol C."), ("mallory", "--anonymous")):
        out = _cli(coordinator, admin, "token", "create", "--name", name, *options)
        tokens[name] = out.strip().splitlines()[-1]
    reader = _cli(coordinator, admin, "token", "create", "--reader", "--name", "stats").strip().splitlines()[-1]
    _cli(coordinator, admin, "study", "add", str(_slots_study(tmp / "study")), "--max-evals", "0")
    channel, stub = connect(coordinator.address)
    score = slots_score(0.1)
    workers = {
        "alice": ScriptedWorker(stub, "alice-desktop", "Alpha CPU", score, switch_a_slot,
                                sigma=0.01, token=tokens["alice"], seed=1, seconds=2.0),
        "carol": ScriptedWorker(stub, "carol-laptop", "Alpha CPU", score, switch_a_slot,
                                sigma=0.01, token=tokens["carol"], seed=2, seconds=2.0),
        "bob": ScriptedWorker(stub, "bob-old-box", "Beta CPU", score, switch_a_slot,
                              sigma=0.01, offset=3.0, token=tokens["bob"], seed=3, seconds=6.0),
        "mallory": ScriptedWorker(stub, "mallory-1", "Alpha CPU", score,
                                  touch_the_note, sigma=0.01, lie=5.0, token=tokens["mallory"], seed=4, seconds=2.0),
    }
    for w in workers.values():
        w.register()
    api = f"http://127.0.0.1:{web_port}/api/v1"
    # The liar's first tasks are baselines: honest work, granted credit... until it is caught.
    wait_for(lambda: workers["mallory"].step() == "baseline", 20, interval=0, what="the liar's first baseline")
    before = {o["name"]: o for o in _get(f"{api}/leaderboard", reader)[1]["owners"]}
    rng = random.Random(7)
    for _ in range(12):
        run_round_robin(list(workers.values()), steps=60, rng=rng)
        states = _states(coordinator, admin)
        if states["mallory-1"] == "quarantined":
            break
    run_round_robin([w for n, w in workers.items() if n != "mallory"], steps=40, rng=rng)
    channel.close()
    yield {"coordinator": coordinator, "web": f"http://127.0.0.1:{web_port}", "api": api, "reader": reader,
           "admin": admin, "before": before, "workers": workers, "tmp": tmp}
    coordinator.kill()


def test_honest_workers_earn_in_proportion_to_normalised_work_and_the_liar_loses_everything(swarm):
    assert swarm["before"][MALLORY]["credit"] > 0, "before it was caught, the liar's baselines earned credit"
    states = _states(swarm["coordinator"], swarm["reader"])
    assert states["mallory-1"] == "quarantined"
    status, board = _get(f"{swarm['api']}/leaderboard", swarm["reader"])
    assert status == 200
    owners = {o["name"]: o for o in board["owners"]}
    assert owners[MALLORY]["credit"] == 0 and owners[MALLORY]["recent_average"] == 0, \
        "caught lying: all its credit is revoked, also what it earned before"
    for name in ("alice", "bob", "Carol C."):
        o = owners[name]
        assert o["granted_results"] >= 0.5 * o["results"] > 0, f"{name}: most honest work is granted"
        # 2 s on the fast class and 6 s on one three times slower earn alike: 2 per evaluation.
        assert o["credit"] == pytest.approx(2.0 * o["granted_results"], rel=1e-6), name
    assert owners["bob"]["team"] == "Red Team"
    teams = {t["name"]: t for t in board["teams"]}
    assert teams["Red Team"]["credit"] == pytest.approx(owners["alice"]["credit"] + owners["bob"]["credit"])
    assert teams["Red Team"]["members"] == 2
    assert sum(o["discoveries"] for o in board["owners"]) >= 2
    assert owners[MALLORY]["discoveries"] == 0
    # A reader token reads status and history, and changes nothing.
    assert "slots" in _cli(swarm["coordinator"], swarm["reader"], "status")
    refused = subprocess.run([sys.executable, "-m", "autoswarm", "token", "create", "--name", "eve", "--coordinator",
                              swarm["coordinator"].address], env={"AUTOSWARM_TOKEN": swarm["reader"], "PATH": "/usr/bin"},
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "needs the admin token" in refused.stderr
    # The CLI shows the same standings.
    cli = json.loads(_cli(swarm["coordinator"], swarm["reader"], "credit", "--json"))
    assert {o["name"]: round(o["credit"], 6) for o in cli["owners"]} == \
        {name: round(o["credit"], 6) for name, o in owners.items()}
    cli_teams = json.loads(_cli(swarm["coordinator"], swarm["reader"], "credit", "--team", "--json"))
    assert {t["name"] for t in cli_teams["teams"]} == {"Red Team", "Blue"}
    table = _cli(swarm["coordinator"], swarm["reader"], "credit")
    assert "alice" in table and "Red Team" in table


_NUMBER = {"type": "number"}
_NULLABLE = {"type": ["number", "null"]}
_STUDY = {
    "type": "object",
    "required": ["name", "metric", "direction", "compare", "quorum", "champion", "initial_metric", "evaluations",
                 "improvements", "in_flight", "pending_claims", "done", "error", "cost"],
    "properties": {"name": {"type": "string"}, "direction": {"enum": ["minimize", "maximize"]},
                   "champion": {"type": "object", "required": ["version", "metric", "since"],
                                "properties": {"version": {"type": "string"}, "metric": _NULLABLE, "since": _NUMBER}},
                   "evaluations": {"type": "integer"}, "done": {"type": "boolean"},
                   "cost": {"type": "object",
                            "required": ["usd", "llm_tokens", "per_evaluation_usd", "per_improvement_usd",
                                         "max_usd", "max_tokens"],
                            "properties": {"usd": _NUMBER, "llm_tokens": {"type": "integer"},
                                           "per_evaluation_usd": _NULLABLE, "per_improvement_usd": _NULLABLE}}},
}
_STUDY_DETAIL = {"allOf": [_STUDY, {
    "type": "object", "required": ["champion_series", "lineage"],
    "properties": {
        "champion_series": {"type": "array", "items": {"type": "object", "required": ["time", "metric"]}},
        "lineage": {"type": "array", "items": {
            "type": "object",
            "required": ["seq", "version", "description", "metric", "time", "improvement", "found_by",
                         "verified_by", "deltas", "cross_class"],
            "properties": {"found_by": {"type": "array", "items": {"type": "string"}},
                           "verified_by": {"type": "array", "items": {"type": "string"}},
                           "deltas": {"type": "object", "additionalProperties": _NULLABLE},
                           "cross_class": {"type": "boolean"}}}}}}]}
_OWNER = {"type": "object",
          "required": ["name", "team", "credit", "recent_average", "discoveries", "discovery", "granted_results",
                       "results", "badge", "machines"],
          "properties": {"credit": _NUMBER, "recent_average": _NUMBER, "discoveries": {"type": "integer"},
                         "badge": {"enum": ["", "top 1%", "top 5%", "top 25%"]}}}
SCHEMAS = {
    "/studies": {"type": "object", "required": ["studies"], "properties": {"studies": {"type": "array",
                                                                                      "items": _STUDY}}},
    "/studies/slots": _STUDY_DETAIL,
    "/studies/slots/results?limit=20": {
        "type": "object", "required": ["study", "results"],
        "properties": {"results": {"type": "array", "maxItems": 20, "minItems": 20, "items": {
            "type": "object", "required": ["id", "time", "kind", "status", "decision", "reason", "metric", "improvement",
                                           "threshold", "description", "hardware_class", "machine", "volunteer",
                                           "evaluate_seconds"]}}}},
    "/leaderboard": {"type": "object", "required": ["computed", "owners", "teams"],
                     "properties": {"owners": {"type": "array", "items": _OWNER},
                                    "teams": {"type": "array", "items": {
                                        "type": "object", "required": ["name", "members", "credit",
                                                                       "recent_average", "discoveries", "badge"]}}}},
    "/teams/Red%20Team": {"allOf": [{"type": "object", "required": ["name", "members", "credit", "recent_average",
                                                                     "discoveries", "discovery", "badge", "volunteers"],
                                      "properties": {"volunteers": {"type": "array", "minItems": 2, "maxItems": 2,
                                                                    "items": _OWNER}}}]},
    "/volunteers/alice": {"allOf": [_OWNER, {"type": "object", "required": ["credit_series"], "properties": {
        "machines": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "hardware_class", "state", "credit", "recent_average"]}},
        "credit_series": {"type": "array", "minItems": 1}}}]},
}


def test_the_json_api_keeps_its_schema_and_says_what_is_missing(swarm):
    api, reader = swarm["api"], swarm["reader"]
    for path, schema in SCHEMAS.items():
        status, body = _get(api + path, reader)
        assert status == 200, path
        jsonschema.validate(body, schema)
    lineage = _get(f"{api}/studies/slots", reader)[1]["lineage"]
    assert lineage[0]["found_by"] == [] and lineage[-1]["found_by"], "each improvement names who found it"
    assert all(set(step["found_by"]) <= {"alice", "bob", "Carol C."} for step in lineage)
    assert any(step["cross_class"] for step in lineage[1:]), "some champion was checked on both classes"
    same = ("name", "team", "credit", "granted_results")     # (the recent average moves with the clock)
    assert [_get(f"{api}/{kind}/alice", reader)[1][k] for kind in ("owners", "volunteers") for k in same] == \
        2 * [_get(f"{api}/volunteers/alice", reader)[1][k] for k in same]
    for path, what in (("/studies/nope", "no study named 'nope'"), ("/volunteers/nobody", "no volunteer named"),
                       ("/owners/nobody", "no volunteer named 'nobody'"), ("/teams/nope", "no team named 'nope'"),
                       ("/studies/nope/results", "no study named 'nope'")):
        status, body = _get(api + path, reader)
        assert status == 404 and what in body["error"], path
    status, body = _get(f"{api}/leaderboard")
    assert status == 401 and "reader token" in body["error"], "the admin asked for a token: none, no page"
    assert _get(f"{api}/leaderboard", swarm["workers"]["alice"].credential)[0] == 401, \
        "a worker's credential is not a reader token"
    raw = json.dumps([_get(api + path, reader)[1] for path in SCHEMAS])
    assert not re.search(r"127\.0\.0\.1|asw_|asj_|asr_|\bw-[0-9a-f]{16}\b", raw), "no address, token or worker id"
    assert "mallory" not in raw and MALLORY in raw, "an anonymous volunteer shows under a pseudonym only"
    assert _get(f"{api}/volunteers/{MALLORY}", reader)[1]["machines"][0]["name"] == "machine 1"


def _png_has_ink(driver, canvas_id: str) -> int:
    """How many pixels of a canvas Chart.js drew on (not transparent)."""
    return driver.execute_script(f"""
        const c = document.getElementById('{canvas_id}');
        if (!c || !window.Chart || !Chart.getChart(c)) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;""")


@needs(bool(CHROMIUM and CHROMEDRIVER), "Debian's chromium and chromium-driver are not installed")
def test_the_web_page_in_a_real_browser(swarm, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400",
                "--no-first-run", "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    shots = []
    try:
        web = swarm["web"]
        driver.get(web + "/")
        assert "reader token" in driver.find_element(By.TAG_NAME, "body").text, "no token, no page"
        driver.get_log("browser")   # that refusal is logged as a failed load (401): expected, drained here
        driver.get(f"{web}/?token={swarm['reader']}")          # once: the token moves into a cookie
        assert "token=" not in driver.current_url
        champion = _get(f"{swarm['api']}/studies/slots", swarm["reader"])[1]["champion"]["metric"]
        pages = {"overview": "/", "study": "/study/slots", "leaderboard": "/leaderboard",
                 "volunteer": "/volunteer/alice"}
        seen = {}
        for name, path in pages.items():
            driver.get(web + path)
            wait_for(lambda: driver.execute_script("return document.readyState") == "complete", 20, what=path)
            seen[name] = driver.find_element(By.TAG_NAME, "body").text
            shot = tmp_path / f"web-{name}.png"
            driver.save_screenshot(str(shot))
            shots.append(shot)
            source = driver.page_source
            assert not re.search(r"127\.0\.0\.1|asw_|asj_|asr_|\bw-[0-9a-f]{16}\b", source), \
                f"{path}: no address, token or worker id"
            if name == "study":
                assert wait_for(lambda: _png_has_ink(driver, "champion-chart") > 500, 20, what="the champion chart")
            if name == "volunteer":
                assert wait_for(lambda: _png_has_ink(driver, "credit-chart") > 500, 20, what="the credit chart")
            errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
            assert not errors, f"{path}: console errors {errors}"
        assert f"{champion:.6g}" in seen["overview"] and f"{champion:.6g}" in seen["study"]
        for owner in ("alice", "bob", "Carol C.", MALLORY, "Red Team", "Blue"):
            assert owner in seen["leaderboard"], owner
        assert "mallory" not in " ".join(seen.values())
        assert "alice-desktop" in seen["volunteer"] and "cpu:Alpha x2" in seen["volunteer"]
        assert "keep" in seen["study"] and "baseline" in seen["study"], "recent results with their decisions"
        driver.get(web + "/study/nope")
        assert "no study named 'nope'" in driver.find_element(By.TAG_NAME, "body").text
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "/study/nope -" not in e["message"]]
        assert not errors, f"the 404 page: console errors {errors}"
    finally:
        driver.quit()
    keep = swarm["tmp"] / "screenshots"
    keep.mkdir(exist_ok=True)
    for shot in shots:
        shutil.copy(shot, keep / shot.name)
    print(f"web page screenshots: {keep}")


def test_discovery_credit_follows_a_merge_to_both_contributors(tmp_path, start_coordinator):
    """alice's edit becomes champion; bob's, made on the same parent, is merged onto it and checked by carol."""
    web_port, metrics_port = free_port(), free_port()
    coordinator = start_coordinator(*FAST, "--web-port", str(web_port), "--metrics-port", str(metrics_port))
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "merge", name="merge", constants="X = 1.0\nY = 3\n"))
    channel, stub = connect(coordinator.address)

    def register(name: str) -> str:
        return stub.Register(worker_pb2.RegisterRequest(name=name, slots=2, mutators=["params"], hardware=common_pb2.Hardware(
            cpu_model="Alpha CPU", cpu_cores=2)), timeout=10).worker_id

    def lease(worker: str):
        task = stub.Lease(worker_pb2.LeaseRequest(worker_id=worker, wait_seconds=0), timeout=10).task
        assert task.lease_id
        return task

    def report(worker: str, task, metric: float, content: str = "", description: str = "") -> str:
        return stub.Report(worker_pb2.ReportRequest(worker_id=worker, lease_id=task.lease_id, result=worker_pb2.Result(
            status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=metric, candidate=content.encode(),
            description=description, evaluate_seconds=1.0)), timeout=10).decision

    alice, bob, carol = register("alice"), register("bob"), register("carol")
    assert report(carol, lease(carol), -20.0) == "baseline"       # scores are what these workers say
    task_a, task_b = lease(alice), lease(bob)                      # both explore the initial version
    parent = task_a.parent.content.decode()
    assert report(alice, task_a, -16.0, parent.replace("Y = 3", "Y = 5"), "Y to 5") == "keep"
    assert report(bob, task_b, -17.75, parent.replace("X = 1.0", "X = 2.0"), "X to 2") == "stale-merged"
    check = lease(carol)
    assert check.kind == common_pb2.TASK_KIND_VERIFY
    assert report(carol, check, -13.25) == "keep"                  # the merge: X = 2, Y = 5
    channel.close()
    status, study = _get(f"http://127.0.0.1:{web_port}/api/v1/studies/merge")
    assert status == 200
    assert [step["found_by"] for step in study["lineage"]] == [[], ["alice"], ["bob"]]
    assert [step["verified_by"] for step in study["lineage"]][2] == ["carol"]
    owners = {o["name"]: o for o in _get(f"http://127.0.0.1:{web_port}/api/v1/leaderboard")[1]["owners"]}
    assert owners["alice"]["discoveries"] == owners["bob"]["discoveries"] == 1
    assert owners["alice"]["discovery"] == pytest.approx(100 * 4.0 / 6.75)
    assert owners["bob"]["discovery"] == pytest.approx(100 * 2.75 / 6.75)
    assert owners["carol"]["discoveries"] == 0 and owners["carol"]["credit"] == pytest.approx(2.0)

    def scraped() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return text if 'autoswarm_discoveries{team="none"} 2.0' in text else ""
    text = wait_for(scraped, 15, what="the credit gauges in Prometheus' format")
    assert 'autoswarm_credit_granted{team="none"} 4.0' in text, "1 s each: a baseline, two edits, a check"


def test_autoswarm_run_serves_the_web_page_and_prints_its_address(tmp_path):
    study = write_study(tmp_path / "tiny", sleep=0.5)
    proc = subprocess.Popen([sys.executable, "-m", "autoswarm", "run", str(study), "--workers", "1", "--max-evals", "40",
                             "--out", str(tmp_path / "out")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = wait_for(lambda: next((l for l in [proc.stderr.readline()] if "web page:" in l or not l), None) or
                        (proc.poll() is not None and "exited"), 60, interval=0, what="the web page's address")
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, f"autoswarm run printed no web address: {line!r}"
        # The page may be a few seconds behind (a snapshot lives up to 5 s): the study shows up.
        wait_for(lambda: [s["name"] for s in _get(url.group(0) + "api/v1/studies")[1]["studies"]] == ["tiny"], 30,
                 interval=0.5, what="the study on the run's web page")
    finally:
        proc.terminate()
        proc.wait(60)


def test_the_process_that_rebuilds_the_standings_dies_with_the_coordinator(tmp_path, start_coordinator):
    web_port = free_port()
    coordinator = start_coordinator(*FAST, "--web-port", str(web_port))
    assert _get(f"http://127.0.0.1:{web_port}/api/v1/leaderboard")[0] == 200      # starts the rebuilding process
    children = wait_for(lambda: _descendants(coordinator.proc.pid), 20, what="the rebuilding process")
    coordinator.proc.kill()          # the coordinator alone, by kill -9: no chance to clean up
    coordinator.proc.wait()
    def alive(pid: int) -> bool:
        try:
            return "spawn" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        except OSError:
            return False
    wait_for(lambda: not any(alive(pid) for pid in children), 15, what="the rebuilding process to exit")
