"""The command line as a user reads it: options where they are typed, text shown literally,
numbers as the metric deserves, layouts that fit 80 columns."""

from __future__ import annotations

import json

import typer.main
from rich.console import Console
from typer.testing import CliRunner

from autoswarm import cli
from autoswarm.cli import app, hoist_global_options
from autoswarm.coordinator.lifecycle import UpdateRefused, plan_update
from autoswarm.coordinator.memory import Tried, _line
from autoswarm.coordinator.reasons import failure_reason
from autoswarm.report import format_metric, lineage_tsv, render_rows, history_record
from autoswarm.status_view import status_tables
from autoswarm.study import parse_study
from autoswarm.v1 import control_pb2
from autoswarm.words import count

ROOT = typer.main.get_command(app)


def test_global_options_written_after_the_subcommand_move_in_front_unless_the_command_has_its_own():
    assert hoist_global_options(ROOT, ["status", "--token", "T"]) == ["--token", "T", "status"]
    assert hoist_global_options(ROOT, ["study", "add", "dir", "--token=T", "--ca", "ca.pem"]) == \
        ["--token=T", "--ca", "ca.pem", "study", "add", "dir"]
    # The worker's --token is its join token, and its --ca its own: they stay where they are.
    assert hoist_global_options(ROOT, ["worker", "--token", "J", "--ca", "c"]) == ["worker", "--token", "J", "--ca", "c"]
    assert hoist_global_options(ROOT, ["--token", "T", "history", "--", "--token"]) == \
        ["--token", "T", "history", "--", "--token"]


def test_a_token_after_the_subcommand_is_accepted_and_used(monkeypatch):
    seen = {}

    class Client:
        def __init__(self, address: str) -> None:
            import os
            seen["token"], seen["address"] = os.environ.get("AUTOSWARM_TOKEN"), address

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def status(self, workers=None, offset=0):
            return control_pb2.StatusResponse()

    monkeypatch.setattr(cli, "ControlClient", Client)
    for name in ("AUTOSWARM_TOKEN", "AUTOSWARM_COORDINATOR"):  # set, then cleared: undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    result = CliRunner().invoke(app, ["status", "--token", "asa_secret", "--coordinator", "10.0.0.1:1"])
    assert result.exit_code == 0, result.output
    assert seen == {"token": "asa_secret", "address": "10.0.0.1:1"}
    assert "No such option" not in result.output
    # ... and a global option before the subcommand reaches it too.
    result = CliRunner().invoke(app, ["--coordinator", "10.0.0.2:2", "--token", "asa_other", "status"])
    assert result.exit_code == 0, result.output
    assert seen == {"token": "asa_other", "address": "10.0.0.2:2"}


def test_help_shows_no_bool_placeholder_for_flags():
    for command in (["coordinator", "--help"], ["worker", "--help"], ["run", "--help"], ["--help"]):
        result = CliRunner().invoke(app, command, env={"COLUMNS": "160"})
        assert result.exit_code == 0
        assert "<bool>" not in result.output, command
    assert "--fsync" in CliRunner().invoke(app, ["coordinator", "--help"], env={"COLUMNS": "160"}).output


def test_an_error_hint_keeps_its_brackets(monkeypatch):
    from autoswarm import plot

    def no_matplotlib(*args, **kwargs):
        raise plot.PlotError("autoswarm plot needs matplotlib: pip install 'autoswarm[plot]'")

    monkeypatch.setattr(cli, "_history", lambda *a: control_pb2.HistoryResponse(study="s", metric="m"))
    monkeypatch.setattr(plot, "plot_progress", no_matplotlib)
    result = CliRunner().invoke(app, ["plot"])
    assert result.exit_code == 2
    assert "error: autoswarm plot needs matplotlib: pip install 'autoswarm[plot]'" in result.output


def test_metrics_print_as_they_deserve_and_counts_agree_with_their_noun():
    assert format_metric(1098220.0) == "1098220"
    assert format_metric(0.4712) == "0.471200"
    assert format_metric(1.25e-05) == "1.25e-05"
    assert format_metric(-3.0) == "-3"
    assert (count(1, "improvement"), count(2, "improvement"), count(1, "study", "studies")) == \
        ("1 improvement", "2 improvements", "1 study")


def _status() -> control_pb2.StatusResponse:
    response = control_pb2.StatusResponse()
    response.studies.add(name="trading-sharpe", metric="pnl_cents", direction="maximize", champion_hash="c" * 64,
                         has_champion_metric=True, champion_metric=1098220.0, has_initial_metric=True,
                         initial_metric=1000000.0, evaluations=37, max_evaluations=100, improvements=1,
                         pending_claims=2, in_flight=3, compare="paired", quorum=2, priority=2)
    response.workers.add(worker_id="w-" + "a" * 16, name="lab[gpu] box", owner="[team] ann", state="working",
                         hardware_class="gpu:NVIDIA H100 80GB HBM3 x8 (80GiB)", slots=8, running=8,
                         last_seen_unix=1000.0, mutators=["llm"])
    return response


def test_status_fits_80_columns_without_cutting_a_value_or_eating_brackets():
    console = Console(width=80, record=True, markup=False)
    for part in status_tables(_status(), 80, now=1003.0):
        console.print(part)
    text = console.export_text()
    assert "lab[gpu] box" in text and "[team] ann" in text
    assert "1098220" in text and "1000000" in text and "…" not in text
    assert "37/100" in text and "priority 2" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    wide = Console(width=160, record=True, markup=False)
    for part in status_tables(_status(), 160, now=1003.0):
        wide.print(part)
    assert "w-aaaaaaaaaaaaaaaa" in wide.export_text(), "the wide layout shows worker ids"


def test_status_shows_a_page_of_workers_with_every_worker_counted_and_says_how_to_see_more():
    response = _status()
    response.workers_total = 100_000
    response.worker_counts.add(state="working", hardware_class="cpu:a", workers=79_000, slots=79_000, running=78_990)
    response.worker_counts.add(state="idle", hardware_class="cpu:a", workers=20_999, slots=20_999)
    response.worker_counts.add(state="offline", hardware_class="gpu:NVIDIA H100 80GB HBM3 x8 (80GiB)", workers=1,
                               slots=8, running=8)
    response.mutator_counts.add(mutator="params", workers=99_999)
    console = Console(width=80, record=True, markup=False)
    for part in status_tables(response, 80, now=1003.0, offset=0, limit=1):
        console.print(part)
    text = console.export_text()
    assert "workers: 79000 working · 20999 idle · 1 offline" in text
    assert "100000" in text and "78990 / 99999" in text, "slots and tasks of workers not offline"
    assert "workers 1–1 of 100000" in text and "99999 more: autoswarm status --workers N --from 1" in text
    assert "params" in text and "99999" in text and max(len(line) for line in text.splitlines()) <= 80


def test_status_from_an_older_coordinator_counts_and_pages_the_rows_it_sent():
    """A coordinator older than pages sends every worker and no counts: counted and paged here."""
    response = control_pb2.StatusResponse()
    for i in range(5):
        response.workers.add(worker_id=f"w-{i}", name=f"box{i}", state="working" if i < 3 else "idle",
                             hardware_class="cpu:a", slots=2, running=1 if i < 3 else 0, mutators=["params"])
    console = Console(width=120, record=True, markup=False)
    for part in status_tables(response, 120, now=1003.0, offset=1, limit=2):
        console.print(part)
    text = console.export_text()
    assert "workers: 3 working · 2 idle" in text and "3 / 10" in text
    assert "workers 2–3 of 5" in text and "box1" in text and "box2" in text and "box3" not in text
    assert "2 more: autoswarm status --workers N --from 3" in text
    assert "params" in text and "5" in text


def test_lineage_lists_operator_events_in_time_order():
    rows = [control_pb2.LineageRow(seq=0, version="a" * 64, created_unix=10.0, description="initial version"),
            control_pb2.LineageRow(seq=1, version="b" * 64, created_unix=30.0, description="X up")]
    events = [control_pb2.StudyEventRow(created_unix=20.0, kind="update", detail="changed: program.md")]
    lines = lineage_tsv("score", rows, events).splitlines()
    assert [line.split("\t")[3] for line in lines[1:]] == ["initial version", "study update: changed: program.md",
                                                          "X up"]


def test_history_as_json_and_csv_name_the_metric_and_keep_the_reason():
    row = control_pb2.HistoryRow(result_id="l-1", kind="explore", status="crash", reason="crash: OOM",
                                 mutate_seconds=1.5, description="batch 8 -> 80, \"big\"")
    data = json.loads(render_rows("val_bpb", [history_record(row)], "json"))
    assert data["metric"] == "val_bpb" and data["rows"][0]["reason"] == "crash: OOM"
    assert data["rows"][0]["metric"] is None
    header, line = render_rows("val_bpb", [history_record(row)], "csv").splitlines()
    assert "val_bpb" in header.split(",") and '"batch 8 -> 80, ""big"""' in line


def test_reasons_name_the_exception_and_memory_cuts_them_at_the_end():
    log = "Traceback (most recent call last):\n  File \"t.py\", line 1\n    1/0\n    ~^~\nZeroDivisionError: " \
          + "division by zero " * 30 + "\n\n"
    reason = failure_reason("crash", log)
    assert reason.startswith("crash: ZeroDivisionError: division by zero") and len(reason) <= 300
    assert failure_reason("ok", log) == ""
    assert failure_reason("timeout", "") == "timeout (the log says nothing more)"
    line = _line(Tried("batch up", "crash", None, True, "ValueError: " + "x" * 400))
    assert "ValueError: xxx" in line and line.endswith("…")


def _spec(**changes):
    data = {"name": "s", "target": "t.py", "evaluate": "python t.py", "metric": "m", "direction": "minimize",
            "time_budget": 5, "timeout": 30}
    return parse_study({**data, **changes})


def test_an_update_may_change_program_data_and_mutator_but_not_what_is_measured():
    old_files = {"study.toml": b"a", "t.py": b"X = 1\n", "program.md": b"old", "data.csv": b"1"}
    new_files = {**old_files, "study.toml": b"b", "program.md": b"new", "data.csv": b"2"}
    plan = plan_update(_spec(), _spec(mutator={"kind": "llm"}), old_files, new_files)
    assert plan.changed == ("data.csv", "program.md", "[mutator]")
    for changed in ({"metric": "other"}, {"time_budget": 10}, {"evaluate": "python u.py"}):
        try:
            plan_update(_spec(), _spec(**changed), old_files, new_files)
        except UpdateRefused as exc:
            assert "another name" in str(exc)
        else:
            raise AssertionError(f"{changed} must be refused")
    try:
        plan_update(_spec(), _spec(), old_files, {**new_files, "t.py": b"X = 2\n"})
    except UpdateRefused as exc:
        assert "t.py differs from the study's initial version" in str(exc)
    else:
        raise AssertionError("a changed target must be refused")


def test_every_study_toml_mistake_is_reported_in_one_run(tmp_path):
    (tmp_path / "train.py").write_text("X = 1\n")
    (tmp_path / "study.toml").write_text(
        'name = "s"\ntarget = "train.py"\nevaluate = "python train.py"\nmetric = "val loss"\n'
        'direction = "down"\ntimeout = -1\nnmae = 1\n[mutator]\nkind = "params"\nbogus = 1\n')
    result = CliRunner().invoke(app, ["study", "add", str(tmp_path), "--coordinator", "127.0.0.1:1"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "5 mistakes:" in text
    for key in ("unknown key 'nmae'", "metric: 'val loss'", "direction: must be", "timeout: must be a positive",
                "mutator.bogus"):
        assert key in text, key


def test_token_create_names_its_owner_like_token_revoke(monkeypatch):
    made = []

    class Client:
        def __init__(self, address: str) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def create_token(self, name: str, **options):
            made.append(name)
            return control_pb2.CreateTokenResponse(name=name, token="asj_x")

    monkeypatch.setattr(cli, "ControlClient", Client)
    for args in (["token", "create", "ann[lab]"], ["token", "create", "--name", "bob"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    assert made == ["ann[lab]", "bob"]
    assert "join token for ann[lab] (shown once)" in CliRunner().invoke(app, ["token", "create", "ann[lab]"]).output
    assert CliRunner().invoke(app, ["token", "create"]).exit_code == 2


def test_a_higher_priority_study_gets_a_larger_share_of_the_workers():
    from autoswarm.coordinator import scheduler

    def view(name: str, priority: int, in_flight: int) -> scheduler.StudyView:
        return scheduler.StudyView(name=name, mutator_kind="params", paired=False, champion_measured=True,
                                   baseline_in_flight=0, in_flight=in_flight, evaluations=0, max_evaluations=0,
                                   priority=priority)

    worker = scheduler.WorkerView("w", frozenset({"params"}), running=0, slots=1)
    in_flight = {"a": 0, "b": 0}
    for _ in range(9):  # nine workers ask in turn; each keeps its task
        choice = scheduler.choose_task([view("a", 2, in_flight["a"]), view("b", 1, in_flight["b"])], worker)
        in_flight[choice.study] += 1
    assert in_flight == {"a": 6, "b": 3}


def test_the_live_view_fits_80_columns_without_cutting_values():
    from autoswarm.watch import WatchState, render

    state = WatchState("127.0.0.1:50051")
    response = _status()
    response.workers[0].state = "[gate] closed"  # a state word comes from the worker: shown literally
    state.update(response, 1000.0)
    state.update(response, 1030.0)
    narrow = Console(width=80, record=True)  # markup on, as in a default console
    narrow.print(render(state, now=1031.0, width=80))
    text = narrow.export_text()
    assert "trading-sharpe" in text and "1098220" in text and "gpu:NVIDIA" in text
    assert "1 [gate] closed" in text
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
