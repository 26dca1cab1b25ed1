"""The web console in a real browser: headless Chromium (Debian's `chromium`,
driven by Playwright) against the session's `redrive server`.

A failed stage is found, its Retry choices hovered and read, FAILED_ACTIONS
clicked, and the stage seen going InProgress and then Succeeded without a
reload; a stage whose pipeline changed shows a disabled Retry with
CodePipeline's reason; a dead-letter queue is dry-run counted, then redriven at
a rate while its progress is watched. Screenshots go to $CONSOLE_SCREENSHOTS,
else target/console-screenshots in the repository.

Every wait is Playwright's `expect` (or support.wait_for) with a deadline: no
fixed sleeps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import playwright.sync_api as playwright_sync
import pytest
import requests
from playwright.sync_api import expect

from conftest import redrive_binary, serve
from support import unique, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
EXPECT_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def screenshots() -> Path:
    d = Path(os.environ.get("CONSOLE_SCREENSHOTS") or REPO_ROOT / "target" / "console-screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM)", pytrace=False)
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    p = context.new_page()
    yield p
    context.close()


def api(endpoint: str, method: str, path: str, body=None, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.request(method, endpoint + path, json=body, headers=headers, timeout=30)
    assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
    return r.json() if r.text else {}


def start_and_wait(endpoint: str, name: str, status: str, token: str | None = None) -> str:
    eid = api(endpoint, "POST", f"/v1/pipelines/{name}/executions", {}, token)["pipelineExecutionId"]
    wait_for(
        f"{name} {status}",
        lambda: api(endpoint, "GET", f"/v1/pipelines/{name}/executions/{eid}", token=token),
        lambda v: v["status"] == status,
    )
    return eid


def gated_pipeline(name: str, flag: Path) -> dict:
    """Build: Compile fails until `flag` exists (and takes 3 s once it does, so
    its InProgress is seen); Lint succeeds. Deploy: Ship succeeds."""
    return {
        "name": name,
        "stages": [
            {
                "name": "Build",
                "actions": [
                    {"name": "Compile", "command": ["sh", "-c", f"test -e '{flag}' && sleep 3"]},
                    {"name": "Lint", "command": ["true"]},
                ],
            },
            {"name": "Deploy", "actions": [{"name": "Ship", "command": ["true"]}]},
        ],
    }


def overlap(a: dict, b: dict) -> bool:
    """Whether two bounding boxes share any area."""
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


def stage_box(page, name: str):
    return page.locator(f'section.stage[data-stage="{name}"]')


def test_retry_failed_actions_from_the_console(endpoint, page, screenshots, tmp_path):
    name = unique("console")
    flag = tmp_path / "flag"
    api(endpoint, "POST", "/v1/pipelines", gated_pipeline(name, flag))
    start_and_wait(endpoint, name, "Failed")

    # The list: the pipeline with its failed-stage badge; open it.
    page.goto(endpoint + "/")
    expect(page).to_have_url(endpoint + "/console")
    row = page.locator("tr", has=page.locator(f'a[href="/console/pipelines/{name}"]'))
    expect(row).to_contain_text("Failed")
    expect(row).to_contain_text("✖ Build")
    page.screenshot(path=str(screenshots / "pipelines.png"), full_page=True)
    row.locator("a", has_text=name).click()

    build = stage_box(page, "Build")
    expect(build.locator(".stage-status")).to_contain_text("Failed")
    expect(build.locator('[data-action="Compile"]')).to_contain_text("Action.FAILED")
    failed_btn = build.get_by_role("button", name="FAILED_ACTIONS")
    all_btn = build.get_by_role("button", name="ALL_ACTIONS")
    failed_tip = build.locator("#tip-Build-FAILED_ACTIONS")
    all_tip = build.locator("#tip-Build-ALL_ACTIONS")
    expect(failed_tip).to_be_hidden()
    failed_btn.hover()
    expect(failed_tip).to_be_visible()
    expect(failed_tip).to_have_text("Would re-run: Compile")
    page.screenshot(path=str(screenshots / "retry-hover.png"), full_page=True)
    # A choice's list never covers the other choice, wide or at phone width.
    assert not overlap(failed_tip.bounding_box(), all_btn.bounding_box())
    page.set_viewport_size({"width": 390, "height": 844})
    failed_btn.hover()
    expect(failed_tip).to_be_visible()
    assert not overlap(failed_tip.bounding_box(), all_btn.bounding_box())
    page.screenshot(path=str(screenshots / "retry-hover-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    all_btn.focus()
    expect(all_tip).to_be_visible()
    expect(all_tip).to_have_text("Would re-run: Compile, Lint")
    expect(failed_btn).to_have_accessible_description("Would re-run: Compile")

    # Fix the cause, click Retry FAILED_ACTIONS: the board updates in place.
    flag.touch()
    page.evaluate("window.__notReloaded = true")
    failed_btn.click()
    expect(build.locator(".stage-status")).to_contain_text("InProgress")
    expect(build.locator('[data-action="Compile"]')).to_contain_text("InProgress")
    page.screenshot(path=str(screenshots / "retry-in-progress.png"), full_page=True)
    expect(build.locator(".stage-status")).to_contain_text("Succeeded")
    expect(stage_box(page, "Deploy").locator(".stage-status")).to_contain_text("Succeeded")
    expect(build.get_by_role("button", name="FAILED_ACTIONS")).to_have_count(0)
    assert page.evaluate("window.__notReloaded") is True, "the page was reloaded"
    page.screenshot(path=str(screenshots / "retry-succeeded.png"), full_page=True)

    # The execution page: the attempt timeline shows both series.
    page.locator('section.stage[data-stage="Build"] .meta a').click()
    compile_rows = page.locator(".action-detail", has=page.locator("h4", has_text="Compile")).locator("tbody tr")
    expect(compile_rows).to_have_count(2)
    expect(compile_rows.nth(0)).to_contain_text("initial")
    expect(compile_rows.nth(1)).to_contain_text("manual")
    expect(compile_rows.nth(1)).to_contain_text("SUCCEEDED")


def test_a_stage_that_cannot_be_retried_shows_a_disabled_button_with_the_reason(endpoint, page, screenshots, tmp_path):
    name = unique("console-changed")
    definition = gated_pipeline(name, tmp_path / "never")
    api(endpoint, "POST", "/v1/pipelines", definition)
    start_and_wait(endpoint, name, "Failed")
    definition["stages"][1]["actions"][0]["name"] = "Ship2"
    api(endpoint, "PUT", f"/v1/pipelines/{name}", definition)

    page.goto(f"{endpoint}/console/pipelines/{name}")
    build = stage_box(page, "Build")
    for mode in ("FAILED_ACTIONS", "ALL_ACTIONS"):
        expect(build.get_by_role("button", name=mode)).to_be_disabled()
    reason = build.locator("#tip-Build-FAILED_ACTIONS")
    expect(reason).to_be_visible()
    expect(reason).to_contain_text("StageNotRetryableException")
    expect(reason).to_contain_text("the pipeline was updated to version 2")
    page.screenshot(path=str(screenshots / "retry-disabled.png"), full_page=True)


def test_dead_letter_queue_dry_run_then_redrive_with_progress(endpoint, page, screenshots):
    name = unique("console-orders")
    queue = name + "-dlq"
    api(
        endpoint,
        "POST",
        "/v1/pipelines",
        {
            "name": name,
            "executionMode": "PARALLEL",
            "deadLetterQueue": queue,
            "stages": [
                {
                    "name": "Charge",
                    "actions": [
                        {
                            "name": "Card",
                            "noop": {"failFirst": 1000, "failWith": "Card.DECLINED"},
                            "retryPolicies": [{"exceptionType": ["Card.DECLINED"], "maxAttempts": 0}],
                        }
                    ],
                }
            ],
        },
    )
    for _ in range(4):
        start_and_wait(endpoint, name, "Failed")

    page.goto(endpoint + "/console/dlq")
    row = page.locator("tr", has=page.locator(f'a[href="/console/dlq/queues/{queue}"]'))
    expect(row.locator("td").nth(1)).to_have_text("4")
    row.get_by_role("link", name=queue).click()
    expect(page.locator("#match-count")).to_have_text("4")
    expect(page.locator("table.list").first).to_contain_text("Card.DECLINED")

    section = page.locator("section.redrive")
    section.get_by_role("button", name="Dry run (count)").click()
    expect(section.locator("#redrive-result")).to_contain_text("Dry run: 4 would be redriven")
    assert api(endpoint, "GET", f"/v1/dlq/queues/{queue}")["depth"] == 4, "a dry run changes nothing"

    section.get_by_label("Rate").fill("4/s")
    section.get_by_label("Max entries").fill("3")
    section.get_by_role("button", name="Redrive", exact=True).click()
    expect(section.locator("#redrive-result")).to_contain_text("started")
    progress = section.locator(".run-progress .progress-text")
    expect(progress).to_contain_text("of 3")
    expect(section.locator(".run-progress")).to_contain_text("SUCCEEDED")
    expect(progress).to_contain_text("3 of 3 processed")
    page.screenshot(path=str(screenshots / "dlq-redrive.png"), full_page=True)
    # The action still fails, so the three redriven entries come back, once redriven.
    wait_for(
        "three entries redriven once",
        lambda: api(endpoint, "GET", f"/v1/dlq/queues/{queue}/entries"),
        lambda v: sorted(e["redriveCount"] for e in v["entries"]) == [0, 1, 1, 1],
    )

    # A second run, one entry a minute: abort it while it waits.
    section.get_by_label("Rate").fill("1/m")
    section.get_by_label("Max entries").fill("")
    section.get_by_role("button", name="Redrive", exact=True).click()
    live = section.locator(".run-progress")
    abort = live.get_by_role("button", name="Abort")
    expect(abort).to_be_visible()
    expect(live).to_contain_text("RUNNING")
    page.once("dialog", lambda d: d.accept())
    abort.click()
    expect(live).to_contain_text("ABORTED")
    expect(abort).to_have_count(0)
    expect(live.locator(".progress-text")).to_contain_text("1 of 4 processed")
    page.screenshot(path=str(screenshots / "dlq-aborted.png"), full_page=True)

    # Purge, after a confirmation that names the count.
    wait_for("all four entries back in the queue", lambda: api(endpoint, "GET", f"/v1/dlq/queues/{queue}"), lambda q: q["depth"] == 4)
    page.reload()
    expect(page.locator("#match-count")).to_have_text("4")
    messages = []
    page.once("dialog", lambda d: (messages.append(d.message), d.accept()))
    page.get_by_role("button", name="Purge…").click()
    expect(page.locator("#redrive-result")).to_have_text("Purged 4 entries.")
    assert messages and "Purge 4 queued entries" in messages[0], messages
    assert api(endpoint, "GET", f"/v1/dlq/queues/{queue}")["depth"] == 0


# ---- the console on a server with auth: ------------------------------------------


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A server with an `auth:` section, and an admin token made with
    `redrive token create --db` before it starts: (url, admin token)."""
    d = tmp_path_factory.mktemp("redrive-console-auth")
    made = subprocess.run(
        [str(redrive_binary()), "token", "create", "--db", str(d / "r.db"), "--name", "admin", "--scope", "admin"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    admin = made.stdout.strip()
    config = d / "server.yaml"
    config.write_text("auth:\n  awsCredentials: []\n")
    for url in serve(d, ["--config", str(config)], None):
        yield url, admin


def log_in(page, token: str):
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()


def test_under_auth_the_console_asks_for_a_token_once_and_a_read_token_sees_disabled_buttons(auth_server, browser, screenshots, tmp_path):
    url, admin = auth_server
    name = unique("console-auth")
    flag = tmp_path / "flag"
    api(url, "POST", "/v1/pipelines", gated_pipeline(name, flag), admin)
    start_and_wait(url, name, "Failed", admin)
    ops = api(url, "POST", "/v1/tokens", {"name": "ops", "scope": "operate"}, admin)["token"]
    viewer = api(url, "POST", "/v1/tokens", {"name": "viewer", "scope": "read"}, admin)["token"]

    # Without a session every page leads to the login page, which leads back.
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{url}/console/pipelines/{name}")
    expect(page).to_have_url(f"{url}/console/login?next=/console/pipelines/{name}")
    log_in(page, "rdv_" + "0" * 64)
    expect(page.locator("#login .result")).to_contain_text("UnauthorizedException")
    page.screenshot(path=str(screenshots / "login.png"), full_page=True)
    log_in(page, ops)
    expect(page).to_have_url(f"{url}/console/pipelines/{name}")
    expect(page.locator("footer")).to_contain_text("Signed in as ops (operate scope)")
    cookie = next(c for c in context.cookies() if c["name"] == "redrive_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/", cookie
    assert cookie["value"] not in ops

    # The list, then Retry FAILED_ACTIONS through the API with the session.
    page.goto(url + "/console")
    expect(page.locator("tr", has=page.locator(f'a[href="/console/pipelines/{name}"]'))).to_contain_text("✖ Build")
    page.goto(f"{url}/console/pipelines/{name}")
    build = stage_box(page, "Build")
    flag.touch()
    build.get_by_role("button", name="FAILED_ACTIONS").click()
    expect(build.locator(".stage-status")).to_contain_text("Succeeded")
    audit = api(url, "GET", "/v1/audit", token=admin)["entries"]
    assert [(e["principal"], e["action"]) for e in audit[:2]] == [
        ("ops", "POST /v1/pipelines/{name}/executions/{id}/stages/{stage}/retry"),
        ("ops", "POST /console/login"),
    ], audit[:3]

    # Log out: the session ends, pages lead to the login page again.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{url}/console/login")
    page.goto(url + "/console")
    expect(page).to_have_url(f"{url}/console/login?next=/console")
    context.close()

    # A read token: the pages show, the buttons that change things are disabled with the reason.
    flag.unlink()
    start_and_wait(url, name, "Failed", admin)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{url}/console/pipelines/{name}")
    log_in(page, viewer)
    build = stage_box(page, "Build")
    for mode in ("FAILED_ACTIONS", "ALL_ACTIONS"):
        expect(build.get_by_role("button", name=mode)).to_be_disabled()
    expect(build.locator("#tip-Build-FAILED_ACTIONS")).to_contain_text("AccessDeniedException: viewer has scope read; this needs operate")
    page.screenshot(path=str(screenshots / "retry-read-only.png"), full_page=True)

    # Revoking the token ends the session: the live board sends the browser to log in.
    api(url, "DELETE", "/v1/tokens/viewer", token=admin)
    expect(page).to_have_url(f"{url}/console/login?next=%2Fconsole%2Fpipelines%2F{name}")
    context.close()
