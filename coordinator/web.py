"""The coordinator's own web page and its JSON API (read-only), served with aiohttp.

It runs on the coordinator's asyncio loop beside grpc.aio; every page reads one
`standings.Snapshot`, which is rebuilt in a process of its own at most every few seconds,
and JSON built from a snapshot is kept until the next one, so a crowd of volunteers
refreshing their page costs the loop little. Pages are rendered with Jinja2
(autoescaped: study descriptions and names come from workers) and draw their charts with
Chart.js, which ships inside the package (`web_static/`): no page loads anything from
elsewhere, and the Content-Security-Policy says so.

No page or API answer carries an address, a token, a worker id or a log. With
`require_token`, every page and API call needs a reader (or the admin) token: as
`Authorization: Bearer TOKEN`, or once as `?token=TOKEN`, which sets a cookie.
"""

from __future__ import annotations

import heapq
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from autoswarm.coordinator.auth import TOKEN_PREFIX, Authenticator
from autoswarm.coordinator.reasons import failure_reason
from autoswarm.coordinator.standings import Snapshot, StandingsBook, StudyPage, Team, Volunteer
from autoswarm.coordinator.store import ResultRecord

API = "/api/v1"
COOKIE = "autoswarm_reader"
MAX_RESULTS_LIMIT = 500
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# What a log line may carry that a public page must not: addresses and tokens.
_IPV4 = r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"
_IPV6 = r"\[?(?<![\w:])[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}(?![\w:])\]?(?::\d+)?"
_TOKEN = "(?:" + "|".join(re.escape(p) for p in TOKEN_PREFIX.values()) + r")[\w-]+"
_PRIVATE = re.compile("|".join((_IPV4, _IPV6, _TOKEN)))
BOOK = web.AppKey("book", StandingsBook)
MEMO = web.AppKey("memo", dict)
TEMPLATES = web.AppKey("templates", jinja2.Environment)


def _number(value: float | None) -> float | None:
    """JSON has no NaN or infinity: they become null."""
    return value if value is not None and math.isfinite(value) else None


# -- JSON shapes (docs/web.md documents them) ---------------------------------------------

def study_json(page: StudyPage, *, lineage: bool = True) -> dict[str, Any]:
    """A study as the API shows it; with `lineage`, its champion series and lineage too."""
    s = page.summary
    out: dict[str, Any] = {
        "name": s.name, "metric": s.metric, "direction": s.direction, "compare": page.compare, "quorum": page.quorum,
        "champion": {"version": s.champion.version, "metric": _number(s.champion.metric), "since": s.champion.created},
        "initial_metric": _number(s.initial_metric), "evaluations": s.evaluations, "improvements": s.improvements,
        "in_flight": s.in_flight, "pending_claims": s.pending_claims, "done": s.done, "error": s.error,
        "cost": {"usd": s.cost_usd, "llm_tokens": s.llm_tokens, "per_evaluation_usd": s.cost_per_evaluation,
                 "per_improvement_usd": s.cost_per_improvement, "max_usd": s.max_cost_usd or None,
                 "max_tokens": s.max_tokens or None},
    }
    if lineage:
        out["champion_series"] = [{"time": t, "metric": _number(m)} for t, m in page.champion_series]
        out["lineage"] = [{
            "seq": step.seq, "version": step.version, "description": step.description,
            "metric": _number(step.metric), "time": step.created, "improvement": _number(step.improvement),
            "found_by": list(step.found_by), "verified_by": list(step.verified_by),
            "deltas": {k: _number(v) for k, v in step.deltas.items()}, "cross_class": step.cross_class,
        } for step in page.lineage]
    return out


def volunteer_json(v: Volunteer, *, detail: bool = True) -> dict[str, Any]:
    """A volunteer as the API shows it; with `detail`, its machines and credit series."""
    out: dict[str, Any] = {
        "name": v.name, "team": v.team, "credit": v.credit, "recent_average": v.recent_average,
        "discoveries": v.discoveries, "discovery": v.discovery, "granted_results": v.granted,
        "results": v.results, "badge": v.badge, "machines": len(v.machines),
    }
    if detail:
        out["machines"] = [{"name": m.label, "hardware_class": m.hardware_class, "state": m.state,
                            "credit": m.credit, "recent_average": m.recent_average,
                            "granted_results": m.granted, "results": m.results} for m in v.machines]
        out["credit_series"] = [{"time": t, "credit": c} for t, c in v.credit_series]
    return out


def team_json(t: Team) -> dict[str, Any]:
    """A team as the API shows it."""
    return {"name": t.name, "members": t.members, "credit": t.credit, "recent_average": t.recent_average,
            "discoveries": t.discoveries, "discovery": t.discovery, "badge": t.badge}


def _rank(v: Volunteer) -> tuple[float, float, str]:
    """Leaderboard order: recent average credit, then credit, then name."""
    return (-v.recent_average, -v.credit, v.name)


def _ranked(volunteers: Iterable[Volunteer]) -> list[Volunteer]:
    return sorted(volunteers, key=_rank)


def leaderboard_json(snap: Snapshot) -> dict[str, Any]:
    """Volunteers and teams by recent average credit."""
    teams = sorted(snap.teams.values(), key=lambda t: (-t.recent_average, -t.credit, t.name))
    return {
        "computed": snap.computed,
        "owners": [volunteer_json(v, detail=False) for v in _ranked(snap.volunteers.values())],
        "teams": [team_json(t) for t in teams],
    }


def public_text(text: str) -> str:
    """`text` with anything that looks like an address or a token blotted out."""
    def hide(match: re.Match[str]) -> str:
        found = match.group(0)
        # A time of day (12:30:45) has colons too: an IPv6 address has "::" or more groups.
        if ":" in found and "." not in found and not found.startswith(tuple(TOKEN_PREFIX.values())) \
                and "::" not in found and found.count(":") < 4:
            return found
        return "[hidden]"
    return _PRIVATE.sub(hide, text)


def result_json(r: ResultRecord, snap: Snapshot) -> dict[str, Any]:
    """One result as the API shows it: public names, no worker id, a redacted reason."""
    return {
        "id": r.id, "time": r.created, "kind": r.kind, "status": r.status, "decision": r.decision,
        "reason": public_text(failure_reason(r.status, r.log_tail)),
        "metric": _number(r.metric), "improvement": _number(r.improvement), "threshold": _number(r.threshold),
        "description": r.description, "hardware_class": r.hardware_class,
        "machine": snap.labels.get(r.worker_id, "?"), "volunteer": snap.owners.get(r.worker_id, "?"),
        "evaluate_seconds": _number(r.timings.get("evaluate_seconds")),
    }


# -- handlers -----------------------------------------------------------------------------

def _memo(request: web.Request, snap: Snapshot, key: str, make: Any) -> Any:
    """`make()`, computed once per snapshot and key (pages reload far more often than it changes)."""
    memo = request.app[MEMO]
    if memo.get("computed") != snap.computed:
        memo.clear()
        memo["computed"] = snap.computed
    if key not in memo:
        memo[key] = make()
    return memo[key]


def _not_found(request: web.Request, message: str) -> web.Response:
    if request.path.startswith(API):
        return web.json_response({"error": message}, status=404)
    return _page(request, "error.html", status=404, title="Not found", message=message)


def _page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    html = request.app[TEMPLATES].get_template(template).render(**context)
    return web.Response(text=html, content_type="text/html", status=status)


def _limit(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("limit", "50")), MAX_RESULTS_LIMIT))
    except ValueError:
        raise web.HTTPBadRequest(text=f"limit must be a whole number from 1 to {MAX_RESULTS_LIMIT}") from None


async def overview(request: web.Request) -> web.Response:
    """`/`: the studies and the top volunteers."""
    snap = await request.app[BOOK].snapshot()

    def top() -> tuple[list[dict[str, Any]], int]:
        # Once per snapshot: over every volunteer and machine (100,000 of them in a big swarm).
        owners = [volunteer_json(v, detail=False) for v in heapq.nsmallest(10, snap.volunteers.values(), key=_rank)]
        return owners, sum(1 for v in snap.volunteers.values() for m in v.machines if m.state != "offline")
    owners, online = _memo(request, snap, "overview", top)
    return _page(request, "overview.html", title="Overview", studies=[study_json(p, lineage=False)
                                                                     for p in snap.studies.values()],
                 owners=owners, machines_online=online, volunteers=len(snap.volunteers))


async def study_page(request: web.Request) -> web.Response:
    """`/study/NAME`: the champion chart, the lineage and the recent results."""
    book = request.app[BOOK]
    snap = await book.snapshot()
    page = snap.studies.get(request.match_info["name"])
    if page is None:
        return _not_found(request, f"no study named {request.match_info['name']!r}")
    results = [result_json(r, snap) for r in await book.recent_results(page.summary.name)]
    return _page(request, "study.html", title=page.summary.name, study=study_json(page), results=results)


async def leaderboard_page(request: web.Request) -> web.Response:
    """`/leaderboard`: volunteers and teams."""
    snap = await request.app[BOOK].snapshot()
    return _page(request, "leaderboard.html", title="Leaderboard",
                 board=_memo(request, snap, "board", lambda: leaderboard_json(snap)))


async def volunteer_page(request: web.Request) -> web.Response:
    """`/volunteer/NAME`: one volunteer's machines and credit over time."""
    snap = await request.app[BOOK].snapshot()
    volunteer = snap.volunteers.get(request.match_info["name"])
    if volunteer is None:
        return _not_found(request, f"no volunteer named {request.match_info['name']!r}")
    return _page(request, "volunteer.html", title=volunteer.name, volunteer=volunteer_json(volunteer))


async def api_studies(request: web.Request) -> web.Response:
    """`/api/v1/studies`."""
    snap = await request.app[BOOK].snapshot()
    return web.json_response({"studies": [study_json(p, lineage=False) for p in snap.studies.values()]})


async def api_study(request: web.Request) -> web.Response:
    """`/api/v1/studies/NAME`."""
    snap = await request.app[BOOK].snapshot()
    page = snap.studies.get(request.match_info["name"])
    if page is None:
        return _not_found(request, f"no study named {request.match_info['name']!r}")
    return web.json_response(study_json(page))


async def api_results(request: web.Request) -> web.Response:
    """`/api/v1/studies/NAME/results?limit=N`."""
    book = request.app[BOOK]
    snap = await book.snapshot()
    name = request.match_info["name"]
    if name not in snap.studies:
        return _not_found(request, f"no study named {name!r}")
    limit = _limit(request)
    return web.json_response({"study": name, "results": [result_json(r, snap)
                                                         for r in await book.recent_results(name, limit)]})


async def api_leaderboard(request: web.Request) -> web.Response:
    """`/api/v1/leaderboard` (its JSON is kept per snapshot)."""
    snap = await request.app[BOOK].snapshot()
    body = _memo(request, snap, "leaderboard", lambda: json.dumps(leaderboard_json(snap)))
    return web.Response(text=body, content_type="application/json")


async def api_team(request: web.Request) -> web.Response:
    """`/api/v1/teams/NAME`."""
    snap = await request.app[BOOK].snapshot()
    team = snap.teams.get(request.match_info["name"])
    if team is None:
        return _not_found(request, f"no team named {request.match_info['name']!r}")
    members = _ranked(v for v in snap.volunteers.values() if v.team == team.name)
    return web.json_response({**team_json(team), "volunteers": [volunteer_json(v, detail=False) for v in members]})


async def api_volunteer(request: web.Request) -> web.Response:
    """`/api/v1/volunteers/NAME` and `/api/v1/owners/NAME`."""
    snap = await request.app[BOOK].snapshot()
    volunteer = snap.volunteers.get(request.match_info["name"])
    if volunteer is None:
        return _not_found(request, f"no volunteer named {request.match_info['name']!r}")
    return web.json_response(volunteer_json(volunteer))


def _token_gate(auth: Authenticator):  # noqa: ANN202 - an aiohttp middleware
    @web.middleware
    async def gate(request: web.Request, handler):  # noqa: ANN001, ANN202
        if request.path.startswith("/static/"):
            return await handler(request)      # the package's own CSS and JS: nothing to protect
        header = request.headers.get("Authorization", "")
        offered = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        if "token" in request.query:
            if not auth.reader(request.query["token"]):
                raise web.HTTPUnauthorized(text="that token is not a reader or admin token (or was revoked)")
            # Into a cookie, and out of the address bar (and the browser's history).
            target = request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"])
            response = web.HTTPSeeOther(location=str(target))
            response.set_cookie(COOKIE, request.query["token"], httponly=True, samesite="Strict",
                                secure=request.secure)
            raise response
        if not offered or not auth.reader(offered):
            raise web.HTTPUnauthorized(text="this coordinator's page needs a reader token: open it once with "
                                            "?token=TOKEN (`autoswarm token create --reader --name NAME`), or send "
                                            "Authorization: Bearer TOKEN")
        return await handler(request)
    return gate


@web.middleware
async def _headers(request: web.Request, handler):  # noqa: ANN001, ANN202
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        response = _not_found(request, f"nothing at {request.path}")
    except web.HTTPException as exc:
        if request.path.startswith(API) and exc.status >= 400:
            response = web.json_response({"error": exc.text or exc.reason}, status=exc.status)
        else:
            raise
    response.headers.update(SECURITY_HEADERS)
    return response


def make_app(book: StandingsBook, auth: Authenticator | None = None, require_token: bool = False) -> web.Application:
    """The read-only web application over `book`; with `require_token`, behind reader tokens."""
    if require_token and (auth is None or not auth.enabled):
        raise ValueError("--web-require-token needs tokens: it cannot be used with --auth none")
    middlewares = [_headers] + ([_token_gate(auth)] if require_token and auth is not None else [])
    app = web.Application(middlewares=middlewares)
    app[BOOK] = book
    app[MEMO] = {}
    templates = jinja2.Environment(loader=jinja2.PackageLoader("autoswarm.coordinator", "web_templates"),
                                   autoescape=True, undefined=jinja2.StrictUndefined)
    templates.filters["num"] = lambda v, digits=6: "—" if v is None else f"{v:.{digits}g}"
    templates.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    app[TEMPLATES] = templates
    app.router.add_get("/", overview)
    app.router.add_get("/study/{name}", study_page)
    app.router.add_get("/leaderboard", leaderboard_page)
    app.router.add_get("/volunteer/{name}", volunteer_page)
    app.router.add_get(f"{API}/studies", api_studies)
    app.router.add_get(f"{API}/studies/{{name}}", api_study)
    app.router.add_get(f"{API}/studies/{{name}}/results", api_results)
    app.router.add_get(f"{API}/leaderboard", api_leaderboard)
    app.router.add_get(f"{API}/volunteers/{{name}}", api_volunteer)
    app.router.add_get(f"{API}/owners/{{name}}", api_volunteer)       # the same: an owner is a volunteer
    app.router.add_get(f"{API}/teams/{{name}}", api_team)
    app.router.add_static("/static/", str(resources.files("autoswarm.coordinator") / "web_static"))
    return app


@dataclass
class WebServer:
    runner: web.AppRunner
    port: int

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_web(app: web.Application, host: str, port: int) -> WebServer:
    """Serves `app` on host:port (0: a free port) on the running loop."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []  # noqa: SLF001 - the bound port
    return WebServer(runner, sockets[0].getsockname()[1] if sockets else port)
