"""`autoswarm credit`: the coordinator's credit standings as a table or as JSON."""

from __future__ import annotations

import json

from rich.markup import escape
from rich.table import Table

from autoswarm.v1 import control_pb2


def _row(r: control_pb2.CreditRow, team: bool) -> dict[str, object]:
    out: dict[str, object] = {"name": r.name}
    if not team:
        out["team"] = r.team
    out.update(credit=r.credit, recent_average=r.recent_average, discoveries=r.discoveries,
               discovery=r.discovery, badge=r.badge)
    if team:
        out["members"] = r.members
    else:
        out.update(machines=r.members, granted_results=r.granted_results)
    return out


def credit_json(response: control_pb2.CreditResponse, *, teams: bool = False) -> str:
    """The standings as JSON: the same fields as the web API's /api/v1/leaderboard."""
    if teams:
        return json.dumps({"computed": response.computed_unix, "teams": [_row(r, True) for r in response.teams]},
                          indent=2)
    return json.dumps({"computed": response.computed_unix, "owners": [_row(r, False) for r in response.volunteers]},
                      indent=2)


def credit_table(response: control_pb2.CreditResponse, *, teams: bool = False) -> Table:
    """The standings as a table, ranked by recent average credit."""
    rows = response.teams if teams else response.volunteers
    table = Table(title="teams" if teams else "volunteers")
    for col in ("#", "team" if teams else "volunteer", *(() if teams else ("team",)), "credit", "recent average",
                "discoveries", "discovery points", "volunteers" if teams else "machines", "badge"):
        table.add_column(col, justify="right" if col not in ("team", "volunteer", "badge") else "left")
    for i, r in enumerate(rows, 1):
        table.add_row(str(i), escape(r.name), *(() if teams else (escape(r.team or "—"),)), f"{r.credit:.1f}",
                      f"{r.recent_average:.1f}", str(r.discoveries), f"{r.discovery:.1f}", str(r.members),
                      escape(r.badge))
    if not rows:
        table.caption = "nobody has earned credit yet"
    return table
