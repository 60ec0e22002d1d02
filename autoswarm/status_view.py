"""`autoswarm status`: a coordinator's studies, workers and mutators as terminal tables.

Two layouts: at 120 columns or more, every column; narrower (80 columns), the columns that
matter at a glance with values never cut, and the rest as one line per study below the table.
Every string is shown literally (names with brackets stay whole).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from autoswarm.report import format_metric
from autoswarm.screen import add_plain_row
from autoswarm.v1 import control_pb2

WIDE_COLUMNS = 120


def _metric(has: bool, value: float) -> str:
    return format_metric(value) if has else "—"


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def study_state(s: control_pb2.StudyStatus) -> str:
    """One word for where a study stands: stopped, paused, done or running."""
    if s.error:
        return "stopped"
    if s.paused:
        return "paused"
    if s.done:
        return "done"
    return "running"


def _table(title: str, columns: Sequence[str], numeric: Sequence[str] = ()) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        # Values are never cut: a value that does not fit wraps instead of ending in "…".
        table.add_column(column, justify="right" if column in numeric else "left", overflow="fold")
    return table


def studies_view(response: control_pb2.StatusResponse, wide: bool) -> list[RenderableType]:
    """The studies table, and in the narrow layout one line of details per study."""
    columns = ["study", "metric", "best", "start", "evals", "kept"]
    columns += ["claims", "in flight", "priority", "acceptance", "state", "champion"] if wide else ["state"]
    table = _table("studies", columns, ("best", "start", "evals", "kept", "claims", "in flight", "priority"))
    notes: list[RenderableType] = []
    for s in response.studies:
        budget = f"/{s.max_evaluations}" if s.max_evaluations else ""
        arrow = "↓" if s.direction == "minimize" else "↑"
        cells = [s.name, f"{s.metric} {arrow}", _metric(s.has_champion_metric, s.champion_metric),
                 _metric(s.has_initial_metric, s.initial_metric), f"{s.evaluations}{budget}", str(s.improvements)]
        acceptance = f"{s.compare}, quorum {s.quorum}"
        if wide:
            cells += [str(s.pending_claims), str(s.in_flight), str(s.priority or 1), acceptance, study_state(s),
                      s.champion_hash[:12]]
        else:
            cells += [study_state(s)]
            notes.append(Text(f"  {s.name}: champion {s.champion_hash[:12]} · {s.pending_claims} claims · "
                              f"{s.in_flight} in flight · {s.compare} q{s.quorum} · priority {s.priority or 1}"))
        add_plain_row(table, *cells)
        if s.llm_tokens or s.cost_usd or s.max_cost_usd or s.max_tokens:
            notes.append(Text(f"  {s.name}: {spend_line(s)}"))
        if s.error:
            notes.append(Text(f"  {s.name} stopped: {s.error}", style="red"))
    return [table, *notes]


def evaluations_done(s: control_pb2.StudyStatus) -> str:
    """Progress as evaluations that ran, e.g. "12/30 (+3 failed edits)": an edit the agent could
    not make is no evaluation, though it uses the budget (else a broken agent would never stop)."""
    ran = s.evaluations - s.failed_edits
    failed = f" (+{s.failed_edits} failed {'edit' if s.failed_edits == 1 else 'edits'})" if s.failed_edits else ""
    return f"{ran}/{s.max_evaluations}{failed}" if s.max_evaluations else f"{ran}{failed}"


def spend_line(s: control_pb2.StudyStatus) -> str:
    """What a study's agents cost: in all, per evaluation, per kept improvement, against its caps."""
    parts = [f"agents spent ${s.cost_usd:.4f} ({s.llm_tokens:,} tokens)"]
    if s.evaluations:
        parts.append(f"${s.cost_usd / s.evaluations:.4f} per evaluation")
    parts.append(f"${s.cost_usd / s.improvements:.4f} per kept improvement" if s.improvements
                 else "no kept improvement yet")
    caps = ([f"${s.max_cost_usd:g}"] if s.max_cost_usd else []) + ([f"{s.max_tokens:,} tokens"] if s.max_tokens else [])
    if caps:
        parts.append("cap " + " / ".join(caps))
    return " · ".join(parts)


def slot_shares(w: control_pb2.WorkerStatus) -> str:
    """Where a worker's slots spent their time, e.g. "eval 97% mut 2% wait 1%" ("" before a report)."""
    seconds = [sum(getattr(t, f"{a}_seconds") for t in w.slot_times) for a in ("evaluating", "mutating", "waiting")]
    total = sum(seconds)
    if total <= 0:
        return ""
    return " ".join(f"{label} {value / total:.0%}" for label, value in zip(("eval", "mut", "wait"), seconds))


def worker_counts(response: control_pb2.StatusResponse) -> list[control_pb2.WorkerCount]:
    """Every worker counted by state and hardware class: the coordinator's counts, or (from a
    coordinator older than them, which lists every worker) counted here from its rows."""
    if response.worker_counts or response.workers_total:
        return list(response.worker_counts)
    counted: dict[tuple[str, str], control_pb2.WorkerCount] = {}
    for w in response.workers:
        count = counted.setdefault((w.state, w.hardware_class),
                                   control_pb2.WorkerCount(state=w.state, hardware_class=w.hardware_class))
        count.workers += 1
        count.slots += w.slots
        count.running += w.running
    return [counted[key] for key in sorted(counted)]


def listed(response: control_pb2.StatusResponse, offset: int = 0,
           limit: int | None = None) -> list[control_pb2.WorkerStatus]:
    """The rows of the page asked for: as sent, or paged here when an older coordinator sent
    every worker (it knows no pages)."""
    if response.workers_total:
        return list(response.workers)
    return list(response.workers[offset:] if limit is None else response.workers[offset:offset + limit])


def workers_total(response: control_pb2.StatusResponse) -> int:
    """Known workers (an older coordinator sends every row and no total)."""
    return response.workers_total or len(response.workers)


def classes_view(response: control_pb2.StatusResponse) -> Table:
    """Workers by hardware class: how many, in which states, tasks running over the slots of
    those not offline (from the counts: a swarm of any size fits in a few lines)."""
    counts = worker_counts(response)
    by_state: dict[str, int] = {}
    for c in counts:
        by_state[c.state] = by_state.get(c.state, 0) + c.workers
    summary = " · ".join(f"{n} {state}" for state, n in sorted(by_state.items(), key=lambda kv: (-kv[1], kv[0])))
    table = _table(f"workers: {summary or 'none yet'}", ["hardware class", "workers", "by state", "running / slots"],
                   ("workers",))
    classes: dict[str, list[control_pb2.WorkerCount]] = {}
    for c in counts:
        classes.setdefault(c.hardware_class, []).append(c)
    for hw, members in sorted(classes.items()):
        live = [c for c in members if c.state != "offline"]
        add_plain_row(table, hw, str(sum(c.workers for c in members)),
                      ", ".join(f"{c.workers} {c.state}" for c in sorted(members, key=lambda c: c.state)),
                      f"{sum(c.running for c in live)} / {sum(c.slots for c in live)}")
    return table


def workers_view(response: control_pb2.StatusResponse, wide: bool, now: float, offset: int = 0,
                 limit: int | None = None) -> Table:
    """One row per worker listed (`limit` at most, from the `offset`-th); the narrow layout leaves
    out the worker id and the claim counts."""
    columns = ["worker", "name", "owner", "state", "hardware class", "running", "results", "claims ok/refuted",
               "last seen"] if wide else ["name", "owner", "state", "hardware class", "running", "seen"]
    total = workers_total(response)
    rows = listed(response, offset, limit)
    title = "workers" if offset == 0 and len(rows) == total else \
        (f"workers {offset + 1}–{offset + len(rows)} of {total}" if rows else f"workers: none listed of {total}")
    table = _table(title, columns, ("running", "results"))
    for w in rows:
        shares = slot_shares(w) if wide else ""
        cells = [w.name, w.owner or "-", w.state, w.hardware_class,
                 f"{w.running}/{w.slots}" + (f" ({shares})" if shares else "")]
        if wide:
            cells = [w.worker_id, *cells, str(w.results), f"{w.claims_confirmed}/{w.claims_refuted}"]
        add_plain_row(table, *cells, _ago(now - w.last_seen_unix))
    return table


def mutator_counts(response: control_pb2.StatusResponse) -> dict[str, int]:
    """How many connected workers can run each mutator kind (the coordinator's counts; counted
    here from the rows of a coordinator older than them)."""
    if response.mutator_counts or response.workers_total:
        return {m.mutator: m.workers for m in response.mutator_counts}
    counts: dict[str, int] = {}
    for w in response.workers:
        if w.state not in ("offline", "stopped"):
            for kind in w.mutators:
                counts[kind] = counts.get(kind, 0) + 1
    return counts


def status_tables(response: control_pb2.StatusResponse, width: int = WIDE_COLUMNS,
                  now: float | None = None, offset: int = 0, limit: int | None = None) -> list[RenderableType]:
    """Studies, workers by class, the workers listed (`limit` from the `offset`-th; None: all
    sent), and which mutators the connected workers can run, laid out for `width`."""
    wide = width >= WIDE_COLUMNS
    now = time.time() if now is None else now
    kinds = _table("mutators", ["mutator", "connected workers"], ("connected workers",))
    for kind, n in sorted(mutator_counts(response).items()):
        add_plain_row(kinds, kind, str(n))
    parts: list[RenderableType] = [*studies_view(response, wide), classes_view(response),
                                   workers_view(response, wide, now, offset, limit)]
    shown = offset + len(listed(response, offset, limit))
    if shown < workers_total(response):
        parts.append(Text(f"  {workers_total(response) - shown} more: autoswarm status --workers N --from {shown}"))
    if response.counted_unix and now - response.counted_unix >= 2:
        parts.append(Text(f"  counts as of {_ago(now - response.counted_unix)} (a big swarm is counted every few seconds)"))
    return [*parts, kinds]
