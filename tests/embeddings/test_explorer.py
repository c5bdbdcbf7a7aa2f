"""The explorer (issue 27): its read-only routes over HTTP, and the page in a real browser — Debian's
chromium (/usr/bin/chromium, installed by `make chromium`, which `make test` runs) driven by Playwright
for Python. Nothing downloads a browser; the page may reach nothing but the service on 127.0.0.1
(every other request is blocked and counted)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import explorer_world as ew
import pytest
import serving_world as w
from servers import free_port, stop

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AT = w.T0.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def backend() -> str:
    """The explorer reads what every backend serves alike: the embedded Milvus Lite file is enough here."""
    return "lite"


@pytest.fixture(scope="module")
def service(tmp_path_factory, settings):
    ws = ew.build(tmp_path_factory.mktemp("explorer"), settings)
    port = free_port()
    w.write_config(ws, settings, default_k=10, cache_s=0.0)
    proc = w.start_service(ws, port)
    yield ws, port
    stop(proc)


def get(port: int, path: str) -> tuple[int, dict]:
    return w.call(port, "GET", path, token=None)


@pytest.mark.slow
def test_user_route_says_cold_start_history_and_rooms_entered(service):
    _, port = service
    status, user = get(port, f"/explore/api/user/1?at={AT}")
    assert status == 200 and user["cold_start"] is False and user["live_sessions_before"] == 45
    assert [e["item_id"] for e in user["entered"]] == ["live:1006"]  # 20 minutes after the cut
    assert [v["item_id"] for v in user["recent_videos"]][:1] == ["photo:17"]  # newest first
    assert user["recent_videos"][0]["title"] == "ranked match #17" and user["recent_videos"][0]["key_subject"]
    status, cold = get(port, f"/explore/api/user/17?at={AT}")
    assert status == 200 and cold["cold_start"] is True
    assert cold["live_history"] == [] and cold["entered"] == []
    assert get(port, f"/explore/api/user/1?at={AT}&window_h=0.1")[1]["entered"] == []  # 6 minutes: not yet
    assert get(port, "/explore/api/user/999")[0] == 404


@pytest.mark.slow
def test_baseline_items_and_bad_inputs(service):
    _, port = service
    status, popular = get(port, f"/explore/api/popular?at={AT}&k=3")
    assert status == 200 and [c["score"] for c in popular["candidates"]] == [9.0, 9.0, 8.0]
    status, items = get(port, "/explore/api/items?ids=live:1000,photo:4")
    assert status == 200 and items["items"]["photo:4"]["title"] == "noodles #4"
    assert items["items"]["live:1000"]["vertical_domain"] == "Food"
    assert get(port, "/explore/api/items?ids=live:1000,../etc")[0] == 422
    assert get(port, "/explore/api/items?ids=" + ",".join(["live:1"] * 201))[0] == 422
    assert get(port, "/explore/api/report/plot/..%2Fmetrics.json")[0] == 404
    assert get(port, "/explore/api/report/plot/nothing.png")[0] == 404
    assert get(port, "/explore/api/item/user:1")[0] == 422
    assert get(port, "/explore/api/popular?at=yesterday")[0] == 422
    hostile = ["/explore/api/user/99999999999999999999", "/explore/api/user/-1",
               "/explore/api/user/1?window_h=0", "/explore/api/user/1?window_h=nan",
               "/explore/api/user/1?at=9999-12-31T23:59:59-14:00", "/explore/api/popular?k=0",
               "/explore/api/popular?k=100000", "/explore/api/item/photo:%00",
               "/explore/api/items?ids=photo:" + "9" * 40, "/explore/api/report/plot/.png",
               "/explore/nothing.js"]
    for path in hostile:
        status, body = get(port, path)
        assert 400 <= status < 500 and set(body) == {"error", "message"}, (path, status, body)


@pytest.mark.slow
def test_baseline_is_what_retrieval_answers_for_a_user_it_knows_nothing_of(service):
    """User 19 has no vector and no history: /retrieve/user falls back to RoomVectors.popular, the Milvus
    query the explorer's baseline answers from the rooms' scalars it keeps."""
    from datetime import timedelta

    _, port = service
    for hours in (0, 3, 10, 26, 39):
        at = (w.T0 - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        _, fallback = get(port, f"/retrieve/user/19?at={at}&k=10")
        _, baseline = get(port, f"/explore/api/popular?at={at}&k=10")
        assert fallback["source"] == "popular_on_air" and fallback["candidates"]
        assert [(c["item_id"], c["score"]) for c in baseline["candidates"]] == [
            (c["item_id"], c["score"]) for c in fallback["candidates"]], at


@pytest.mark.slow
def test_projection_is_computed_once_per_version_and_cached(service):
    ws, port = service
    status, first = get(port, "/explore/api/projection")
    assert status == 200 and first["n"] == 100 and first["model_version"] == "v1"
    assert len(first["transferable"]["x"]) == 100 and len(first["residual"]["y"]) == 100
    assert first["topic"] is None and set(first["domain"]) == {"photo", "live"}
    cached = ws.root / "explorer" / "projection_v1.json"
    assert json.loads(cached.read_text()) == first
    # rooms of one topic lie closer together than rooms of different topics (the world's vectors do)
    xs, ys = first["transferable"]["x"], first["transferable"]["y"]
    at = {i: (x, y) for i, x, y in zip(first["item_id"], xs, ys, strict=True)}
    def dist(a, b):
        return ((at[a][0] - at[b][0]) ** 2 + (at[a][1] - at[b][1]) ** 2) ** 0.5
    same = [dist(f"live:{1000 + k}", f"live:{1004 + k}") for k in range(8)]
    other = [dist(f"live:{1000 + k}", f"live:{1001 + k}") for k in range(8)]
    assert sum(same) < sum(other)


@pytest.mark.slow
def test_platform_shows_versions_alias_history_quarantine_and_services(service):
    _, port = service
    status, p = get(port, "/explore/api/platform")
    assert status == 200
    assert p["models"]["target"] == "rooms_v1" and p["models"]["collections"][0]["serving"] is True
    assert [(e["action"], e["collection"], e["previous"]) for e in p["alias_history"]] == [
        ("publish", "rooms_v1", None)]
    services = {s["name"]: [v["name"] for v in s["views"]] for s in p["feature_services"]["services"]}
    assert services["retrieval_user"] == ["user_embeddings", "user_recent_videos", "user_features_daily"]
    views = {v["name"]: v for v in p["feature_services"]["views"]}
    assert views["user_embeddings"]["materialized_until"] is not None


def test_run_log_keeps_the_newest_run(tmp_path, monkeypatch):
    from rgcd import run_log

    monkeypatch.setenv(run_log.RUN_ENV, "A")
    run_log.record_stage(tmp_path, "ingest", "old", True, 1.0, 10)
    monkeypatch.setenv(run_log.RUN_ENV, "B")
    run_log.record_stage(tmp_path, "ingest", "1,000 rows", True, 1.5, 2**20)
    with run_log.log_path(tmp_path).open("a") as out:
        out.write('{"run": "B", "stage": "bui')  # a line torn by a kill
    run_log.record_stage(tmp_path, "build", "boom", False, 0.5, 2**20)
    assert [(e["stage"], e["line"], e["ok"]) for e in run_log.last_run(tmp_path)] == [
        ("ingest", "1,000 rows", True), ("build", "boom", False)]


# -- the page in a real browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(service, tmp_path_factory):
    """A chromium page on the explorer; yields (page, console errors, requests blocked, shots folder)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium; `make test` runs it)")
    from playwright.sync_api import sync_playwright

    _, port = service
    profile = tmp_path_factory.mktemp("chromium-profile")
    shots = tmp_path_factory.mktemp("screenshots")
    errors: list[str] = []
    blocked: list[str] = []
    base = f"http://127.0.0.1:{port}"

    def only_this_server(route) -> None:
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1360, "height": 900})
        try:
            tab = context.new_page()
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            context.route("**/*", only_this_server)
            tab.goto(base + "/explore/")
            tab.wait_for_selector("body[data-ready=user]", timeout=30_000)
            yield tab, errors, blocked, shots, port
        finally:
            context.close()


def wait_view(tab, view: str) -> None:
    tab.wait_for_selector(f"body[data-ready={view}]", timeout=30_000)


def then_wait(tab, view: str, action) -> None:
    """Do `action` (one that changes the address's hash) and wait until the page has drawn `view` anew."""
    tab.evaluate("document.body.dataset.ready = 'changing'")
    action()
    wait_view(tab, view)


@pytest.mark.slow
def test_browser_user_view_matches_the_ranker_route(page):
    tab, errors, blocked, shots, port = page
    if tab.evaluate("location.hash") not in ("", "#user"):  # the browser tests share one page, in any order
        then_wait(tab, "user", lambda: tab.evaluate("location.hash = '#user'"))
    # the second suggestion: user 1, who has a live history
    then_wait(tab, "user", lambda: tab.select_option("#user-pick", index=2))
    assert tab.evaluate("location.hash").startswith("#user/1?")
    _, answer = get(port, f"/retrieve/user/1?at={AT}&k=10")
    rows = tab.locator("#candidates-model tr[data-item]")
    shown = [rows.nth(i).get_attribute("data-item") for i in range(rows.count())]
    assert shown == [c["item_id"] for c in answer["candidates"]] and len(shown) == 10
    reasons = [rows.nth(i).locator("td.reason").inner_text() for i in range(rows.count())]
    assert reasons == [c["reason"] for c in answer["candidates"]] and all(reasons)
    scores = [float(rows.nth(i).locator("td.num").nth(1).inner_text()) for i in range(rows.count())]
    assert scores == pytest.approx([c["score"] for c in answer["candidates"]], abs=5e-5)
    _, popular = get(port, f"/explore/api/popular?at={AT}&k=10")
    baseline = tab.locator("#candidates-baseline tr[data-item]")
    assert [baseline.nth(i).get_attribute("data-item") for i in range(baseline.count())] == [
        c["item_id"] for c in popular["candidates"]]
    assert "live:1006" in tab.locator("#entered-summary").inner_text()
    assert "live sessions before" in tab.locator("#cold-start").inner_text()
    assert tab.locator("#candidates-baseline tr.entered[data-item='live:1006']").count() == 1  # rank 5 there
    tab.screenshot(path=str(shots / "user.png"), full_page=True)
    assert not errors and not blocked, (errors, blocked)


@pytest.mark.slow
def test_browser_short_video_view_lists_i2i_rooms_with_reasons(page):
    tab, errors, blocked, shots, port = page
    then_wait(tab, "item", lambda: tab.evaluate(f"location.hash = '#item/photo:4?at={AT}'"))
    _, answer = get(port, f"/retrieve/item/photo:4?at={AT}&k=10")
    rows = tab.locator("#candidates-i2i tr[data-item]")
    assert [rows.nth(i).get_attribute("data-item") for i in range(rows.count())] == [
        c["item_id"] for c in answer["candidates"]]
    assert "noodles #4" in tab.locator("#item-card").inner_text()
    tab.screenshot(path=str(shots / "item.png"), full_page=True)
    assert not errors and not blocked, (errors, blocked)


@pytest.mark.slow
def test_browser_space_draws_every_point_and_opens_one(page):
    tab, errors, blocked, shots, port = page
    then_wait(tab, "space", lambda: tab.evaluate("location.hash = '#space'"))
    assert tab.locator("#space-canvas").get_attribute("data-drawn") == "100"
    painted = tab.evaluate("""() => { const c = document.getElementById('space-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert painted > 100 * 10  # each point covers several pixels
    then_wait(tab, "space", lambda: tab.select_option("#colour-pick", "category"))
    assert "Food" in tab.locator("#legend").inner_text()
    box = tab.locator("#space-canvas").bounding_box()
    assert box is not None
    hit = tab.evaluate("""() => { const c = document.getElementById('space-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 200) { const p = (i - 3) / 4;
            return [p % c.width + 1, Math.floor(p / c.width) + 1]; } return null; }""")
    assert hit is not None
    tab.mouse.move(box["x"] + hit[0] * box["width"] / 900, box["y"] + hit[1] * box["height"] / 600)
    assert tab.locator("#tip").is_visible() and ":" in tab.locator("#tip").inner_text()
    tab.screenshot(path=str(shots / "space.png"), full_page=True)
    tab.evaluate("document.body.dataset.ready = 'changing'")
    tab.mouse.click(box["x"] + hit[0] * box["width"] / 900, box["y"] + hit[1] * box["height"] / 600)
    tab.wait_for_function("['item', 'room'].includes(document.body.dataset.ready)")
    assert tab.locator("#item-card").count() == 1
    assert not errors and not blocked, (errors, blocked)


@pytest.mark.slow
def test_browser_yardstick_numbers_are_metrics_json(page, service):
    tab, errors, blocked, shots, port = page
    ws_metrics = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/explore/api/report").read())
    then_wait(tab, "report", lambda: tab.evaluate("location.hash = '#report'"))
    ws = service[0]
    on_disk = json.loads((ws.reports / "explorer-test" / "metrics.json").read_text())
    assert ws_metrics["protocols"] == on_disk["protocols"]
    for metric in ("NDCG@10", "HR@50"):
        if metric != "NDCG@10":
            then_wait(tab, "report", lambda m=metric: tab.select_option("#metric-pick", m))
        cells = tab.locator(f"td[data-metric='{metric}']")
        assert cells.count() == 2 * 2 * 7  # protocols x models x slices
        checked = 0
        for i in range(cells.count()):
            cell = cells.nth(i)
            p, m, s = (cell.get_attribute(f"data-{a}") for a in ("protocol", "model", "slice"))
            expected = on_disk["protocols"][p][m][s].get(metric)
            text = cell.inner_text().split(" ±")[0]
            if expected is None:
                assert text == "–"
                continue
            assert float(text) == pytest.approx(expected, abs=5e-5), (p, m, s, metric)
            checked += 1
        assert checked == 2 * 2 * 3
    assert tab.locator(".plots img").count() == len(ws_metrics["plots"]) > 0
    tab.wait_for_function("[...document.querySelectorAll('.plots img')]"
                          ".every(i => i.complete && i.naturalWidth > 0)")
    tab.screenshot(path=str(shots / "report.png"), full_page=True)
    assert not errors and not blocked, (errors, blocked)


@pytest.mark.slow
def test_browser_platform_view(page):
    tab, errors, blocked, shots, port = page
    then_wait(tab, "platform", lambda: tab.evaluate("location.hash = '#platform'"))
    assert "rooms_v1" in tab.locator("#versions").inner_text()
    assert "retrieval_user" in tab.locator("#services").inner_text()
    assert "user_embeddings" in tab.locator("#views").inner_text()
    tab.screenshot(path=str(shots / "platform.png"), full_page=True)
    assert not errors and not blocked, (errors, blocked)


@pytest.mark.slow
def test_rgcd_explore_points_at_the_service_already_running(service):
    from click.testing import CliRunner

    from rgcd.cli import cli

    ws, port = service
    out = CliRunner().invoke(cli, ["-w", str(ws.root), "explore", "--port", str(port), "--no-open"])
    assert out.exit_code == 0 and f"http://127.0.0.1:{port}/explore/" in out.output
