"""`autoswarm status --watch`: a live terminal view of a coordinator, for people.

Polls the control service's Status and redraws: each study's champion and its metric, the
improvement count, evaluations per minute, and the workers by state and hardware class.
Evaluations per minute are measured here, from successive polls, so the view needs nothing
but the gRPC port that `status` already uses (no Prometheus).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from autoswarm.control import ControlClient, ControlError
from autoswarm.report import SHORT_HASH, format_metric
from autoswarm.screen import add_plain_row
from autoswarm.status_view import classes_view
from autoswarm.v1 import control_pb2

RATE_WINDOW_SECONDS = 60.0


@dataclass
class RateWindow:
    """Events per minute from (time, running total) samples over a sliding window."""

    window: float = RATE_WINDOW_SECONDS
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, when: float, total: int) -> None:
        if self.samples and total < self.samples[-1][1]:
            self.samples.clear()  # the total went back (another database): start over
        self.samples.append((when, total))
        # Keep one sample older than the window, so the rate spans the whole window.
        while len(self.samples) > 2 and self.samples[1][0] <= when - self.window:
            self.samples.popleft()

    def per_minute(self) -> float | None:
        """None until two samples some time apart exist."""
        if len(self.samples) < 2:
            return None
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        if t1 - t0 <= 0:
            return None
        return (n1 - n0) * 60.0 / (t1 - t0)


@dataclass
class WatchState:
    """What the view remembers between polls."""

    address: str
    rates: dict[str, RateWindow] = field(default_factory=dict)
    response: control_pb2.StatusResponse | None = None
    error: str = ""
    updated: float = 0.0

    def update(self, response: control_pb2.StatusResponse, when: float) -> None:
        self.response, self.error, self.updated = response, "", when
        for study in response.studies:
            self.rates.setdefault(study.name, RateWindow()).add(when, study.evaluations)

    def failed(self, error: str) -> None:
        self.error = error


def _metric(has: bool, value: float) -> str:
    return format_metric(value) if has else "—"


def _study_state(s: control_pb2.StudyStatus) -> Text:
    if s.error:
        return Text(f"stopped: {s.error}", style="red")
    if s.paused:
        return Text("paused", style="yellow")
    if s.done:
        return Text("done", style="green")
    return Text("running", style="cyan")


WIDE_COLUMNS = 120
# The columns kept below WIDE_COLUMNS (an 80-column terminal), with shorter headings: values whole.
_NARROW = {"study": "study", "metric": "metric", "champion": "best", "kept": "kept", "evaluations": "evals",
           "evals/min": "/min", "state": "state"}


def render(state: WatchState, now: float | None = None, width: int = WIDE_COLUMNS) -> RenderableType:
    """The whole view as one rich renderable, laid out for a terminal `width` columns wide."""
    now = time.time() if now is None else now
    header = Text.assemble(("autoswarm", "bold"), f" · {state.address}")  # Text: never markup
    if state.updated:
        header.append(f" · updated {time.strftime('%H:%M:%S', time.localtime(state.updated))}")
    parts: list[RenderableType] = [header]
    if state.error:
        parts.append(Text(f"coordinator unreachable, retrying: {state.error}", style="bold red"))
    response = state.response
    if response is None:
        return Group(*parts)

    columns = ("study", "metric", "champion", "start", "kept", "evaluations", "evals/min", "in flight",
               "champion version", "state")
    narrow = width < WIDE_COLUMNS
    if narrow:
        columns = tuple(_NARROW)
    studies = Table(title="studies", title_justify="left", expand=False,
                    box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD, pad_edge=not narrow)
    for column in columns:
        studies.add_column(_NARROW[column] if narrow else column, overflow="fold",
                           justify="right" if column in ("kept", "evaluations", "evals/min", "in flight") else "left")
    for s in response.studies:
        rate = state.rates.get(s.name, RateWindow()).per_minute()
        budget = f"/{s.max_evaluations}" if s.max_evaluations else ""
        cells: dict[str, RenderableType] = {
            "study": s.name, "metric": f"{s.metric} ({'↓' if s.direction == 'minimize' else '↑'})",
            "champion": Text(_metric(s.has_champion_metric, s.champion_metric), style="bold green"),
            "start": _metric(s.has_initial_metric, s.initial_metric), "kept": str(s.improvements),
            "evaluations": f"{s.evaluations}{budget}", "evals/min": "-" if rate is None else f"{rate:.1f}",
            "in flight": str(s.in_flight), "champion version": s.champion_hash[:SHORT_HASH], "state": _study_state(s),
        }
        add_plain_row(studies, *(cells[c] for c in columns))
    if not response.studies:
        add_plain_row(studies, "no studies yet: autoswarm study add DIR", *[""] * (len(columns) - 1))
    parts.append(studies)

    # Counted by the coordinator (its census): the view asks for no worker rows, so a poll every
    # 2 s of a swarm of 100,000 costs it a few studies, not 100,000 rows (~1 s of its CPU).
    parts.append(classes_view(response))
    return Group(*parts)


def watch_status(address: str, interval: float = 2.0, console: Console | None = None,
                 polls: int | None = None, sleep: Callable[[float], None] = time.sleep) -> WatchState:
    """Redraws the view every `interval` seconds until Ctrl-C (or `polls` polls, for scripts).

    The first poll must succeed (a wrong address fails at once); later failures are shown in
    the view and retried, so the view survives a coordinator restart.
    """
    console = console or Console()
    state = WatchState(address)
    with ControlClient(address, timeout=max(interval, 5.0)) as control:
        state.update(control.status(workers=0), time.time())

        def poll() -> None:
            try:
                state.update(control.status(workers=0), time.time())
            except ControlError as exc:
                state.failed(str(exc))

        done = 1
        try:
            if console.is_terminal:
                with Live(render(state, width=console.width), console=console, refresh_per_second=4,
                          transient=False) as live:
                    while polls is None or done < polls:
                        sleep(interval)
                        poll()
                        done += 1
                        live.update(render(state, width=console.width))
            else:
                # Not a terminal (a pipe, a log file): print one view per poll instead of redrawing.
                console.print(render(state, width=console.width))
                while polls is None or done < polls:
                    sleep(interval)
                    poll()
                    done += 1
                    console.print(render(state, width=console.width))
        except KeyboardInterrupt:
            pass
    return state
