"""The web application alone (aiohttp's test client over loopback): escaping, errors, tokens, headers."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from autoswarm.coordinator import web
from autoswarm.coordinator.auth import Authenticator
from autoswarm.coordinator.engine import StudySummary
from autoswarm.coordinator.standings import LineageStep, Machine, Snapshot, StudyPage, Volunteer
from autoswarm.coordinator.store import ChampionRecord, Store, WorkerRecord

EVIL = '<script>alert("x")</script>'


class FakeBook:
    """A standings book with a fixed snapshot (the real one reads a database)."""

    def __init__(self) -> None:
        champion = ChampionRecord("s", 1, "v" * 64, 0.25, "r1", 10.0)
        summary = StudySummary("s", "loss", "minimize", champion, 0.5, 12, 1, 0, 0, "")
        step = LineageStep(1, "v" * 64, EVIL, 0.25, 10.0, 0.25, ("alice",), ("bob-box",), {"cpu:x": 0.25}, False)
        page = StudyPage(summary, "paired", 2, ((0.0, 0.5), (10.0, 0.25)), (step,))
        machine = Machine("w-0123456789abcdef", "alice-box", "cpu:x", "idle", 4.0, 0.4, 2, 3)
        alice = Volunteer("alice", "Red Team", False, 4.0, 0.4, 1, 100.0, 2, 3, "", (machine,), ((5.0, 4.0),))
        self.snap = Snapshot(20.0, {"s": page}, {"alice": alice}, {}, {"w-0123456789abcdef": "alice-box"},
                             {"w-0123456789abcdef": "alice"})

    async def snapshot(self) -> Snapshot:
        return self.snap

    async def recent_results(self, study: str, limit: int = 50) -> list:
        return []


def _serve(app, check):
    async def main():
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await check(client)
    asyncio.run(main())


def test_pages_escape_what_workers_wrote_and_send_a_strict_policy():
    async def check(client):
        response = await client.get("/study/s")
        html = await response.text()
        assert response.status == 200
        assert EVIL not in html and "&lt;script&gt;" in html
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "w-0123456789abcdef" not in html
        static = await client.get("/static/chart.umd.min.js")
        assert static.status == 200 and "Chart.js v4" in (await static.text())[:200]
    _serve(web.make_app(FakeBook()), check)


def test_unknown_things_are_404s_with_a_message_and_bad_limits_400s():
    async def check(client):
        for path, message in (("/api/v1/studies/nope", "no study named 'nope'"),
                              ("/api/v1/volunteers/nobody", "no volunteer named 'nobody'"),
                              ("/api/v1/nothing", "nothing at /api/v1/nothing")):
            response = await client.get(path)
            assert response.status == 404 and message in (await response.json())["error"]
        page = await client.get("/volunteer/nobody")
        assert page.status == 404 and "no volunteer named" in await page.text()
        bad = await client.get("/api/v1/studies/s/results?limit=lots")
        assert bad.status == 400 and "limit must be" in (await bad.json())["error"]
    _serve(web.make_app(FakeBook()), check)


def test_a_required_token_is_a_reader_or_admin_token_and_lands_in_a_cookie(tmp_path):
    auth = Authenticator(Store(tmp_path / "s.db"))
    reader = auth.create_join_token("stats", kind="reader")
    join = auth.create_join_token("alice")

    async def check(client):
        assert (await client.get("/api/v1/leaderboard")).status == 401
        assert (await client.get("/api/v1/leaderboard", headers={"Authorization": f"Bearer {join}"})).status == 401
        ok = await client.get("/api/v1/leaderboard", headers={"Authorization": f"Bearer {reader}"})
        assert ok.status == 200 and (await ok.json())["owners"][0]["name"] == "alice"
        moved = await client.get(f"/leaderboard?token={reader}", allow_redirects=False)
        assert moved.status == 303 and moved.headers["Location"] == "/leaderboard"
        assert "HttpOnly" in moved.headers["Set-Cookie"]
        page = await client.get("/leaderboard")                 # the cookie jar carries the token now
        assert page.status == 200 and "Red Team" in await page.text()
        assert (await client.get("/static/style.css")).status == 200
    _serve(web.make_app(FakeBook(), auth, require_token=True), check)


def test_a_reason_from_a_log_hides_addresses_and_tokens():
    line = "ConnectionError: 10.1.2.3:8080 [fe80::1]:443 2001:db8::7 refused asw_abc-DEF_12 and asj_x"
    shown = web.public_text(line)
    assert shown == "ConnectionError: [hidden] [hidden] [hidden] refused [hidden] and [hidden]"
    assert web.public_text("loss 0.25 at 12:30:45, step 3") == "loss 0.25 at 12:30:45, step 3"


def test_requiring_a_token_without_tokens_is_refused():
    with pytest.raises(ValueError, match="--auth none"):
        web.make_app(FakeBook(), None, require_token=True)


def test_the_snapshot_shows_owners_by_their_public_names(tmp_path):
    """standings.build over a real store: an anonymous owner's machines are numbered, not named."""
    from autoswarm.coordinator.standings import WorkerRow, build

    store = Store(tmp_path / "s.db")
    auth = Authenticator(store)
    auth.create_join_token("carol", anonymous=True, team="Blue")
    worker = WorkerRecord("w-1", "carols-laptop", {}, "cpu:x", 1, ("params",), "idle", 0.0, 0.0, owner="carol")
    rows = [WorkerRow(worker.id, worker.name, worker.owner, worker.registered, worker.hardware_class, "idle", False)]
    snap = build(store, [], rows, {}, now=1.0)
    (name, volunteer), = snap.volunteers.items()
    assert name.startswith("anonymous-") and "carol" not in name and volunteer.team == "Blue"
    assert [m.label for m in volunteer.machines] == ["machine 1"]


def test_a_study_page_shows_what_its_agents_cost_per_evaluation_and_per_kept_improvement():
    book = FakeBook()
    page = book.snap.studies["s"]
    spent = StudySummary("s", "loss", "minimize", page.summary.champion, 0.5, 12, 3, 0, 0, "",
                         llm_tokens=48_000, cost_usd=0.6, max_cost_usd=5.0)
    book.snap.studies["s"] = StudyPage(spent, page.compare, page.quorum, page.champion_series, page.lineage)

    async def check(client):
        html = await (await client.get("/study/s")).text()
        assert "$0.6000 (48,000 tokens)" in html
        assert "$0.0500 per evaluation" in html and "$0.2000 per kept improvement" in html and "cap $5" in html
        cost = (await (await client.get("/api/v1/studies/s")).json())["cost"]
        assert cost["per_evaluation_usd"] == pytest.approx(0.05) and cost["per_improvement_usd"] == pytest.approx(0.2)
        assert cost["max_usd"] == 5.0 and cost["max_tokens"] is None
    _serve(web.make_app(book), check)
