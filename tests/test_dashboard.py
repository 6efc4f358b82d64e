"""The web dashboard in a real browser: Debian's chromium, headless, driven by Selenium
through chromium-driver, against a real `jarvis-dns serve` on loopback.

What a user would see: the page loads with no console error; a registration made over
HTTP shows without a reload within 2 s, a busy flip changes its row, a deregistration
removes it; the event stream and the DNS answers follow; the requirements filter shows
what discover picks; an ACL token typed in is kept in the tab's sessionStorage; a phone's
width needs no sideways scrolling. A screenshot of each view is written to the test's
tmp dir and checked to be more than a blank page.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from test_serve import Server

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
SHOWS_WITHIN_S = 2.0  # the bound: a change is on screen within 2 s
MIN_COLOURS = 8  # a blank or broken page has one or two


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for path in (CHROMIUM, DRIVER):
        assert shutil.which(path), f"{path} is missing: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--window-size=1280,900"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver listens on loopback only (chromedriver's default without --allowed-ips).
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    served = Server(tmp_path / "data", "--no-active-checks")
    served.wait_ready()
    yield served
    served.kill()


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(driver: WebDriver, what: str, check: Any, timeout: float = SHOWS_WITHIN_S) -> Any:
    return WebDriverWait(driver, timeout).until(check, message=f"not within {timeout} s: {what}")


def open_page(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_for(driver, "live", lambda d: d.find_element(By.ID, "status").text == "live", 10)


def screenshot(driver: WebDriver, path: Path) -> Path:
    driver.save_screenshot(str(path))
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) >= MIN_COLOURS, f"{path.name} looks blank"
    return path


def register(url: str, iid: int, **extra: Any) -> None:
    body = {"service_type": "api", "instance_id": iid, "host": "127.0.0.1", "port": 8000 + iid}
    answer = httpx.post(url + "/v1/instances", json={**body, **extra})
    assert answer.status_code == 201, answer.text


def rows(driver: WebDriver, selector: str) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, selector)


def test_changes_over_http_show_live_in_every_view(
    browser: WebDriver, server: Server, tmp_path: Path
) -> None:
    browser.get_log("browser")  # start from an empty console
    open_page(browser, server.url + "/ui/")
    assert rows(browser, "#services tbody tr") == []

    # A registration over HTTP appears without a reload.
    register(server.url, 1, metadata={"version": "1.0", "zone": "eu"})
    wait_for(browser, "api listed", lambda d: rows(d, 'tr[data-service="api"]'))
    live = rows(browser, 'tr[data-service="api"] .count-live')[0]
    assert live.text == "1"
    screenshot(browser, tmp_path / "services.png")

    # Its instances: host:port, status, busy, metadata, a heartbeat age.
    rows(browser, 'tr[data-service="api"] a.svc')[0].click()
    wait_for(browser, "instance row", lambda d: rows(d, 'tr[data-id="1"]'))
    row = rows(browser, 'tr[data-id="1"]')[0]
    assert "127.0.0.1:8001" in row.text and "active" in row.text and "idle" in row.text
    assert "version=1.0" in row.text and "ago" in row.text

    # What DNS answers for it, as dig prints it.
    def dns_text(d: WebDriver) -> str:
        text: str = d.find_element(By.ID, "dns").text
        return text if "1.api.jarvis.internal." in text else ""

    dig = wait_for(browser, "DNS answers", dns_text)
    assert "SRV" in dig and "IN" in dig and "127.0.0.1" in dig and "TXT" in dig

    # A busy flip changes the row; a second instance appears beside it.
    flip = httpx.put(server.url + "/v1/services/api/instances/1/status", json={"busy": True})
    assert flip.status_code == 200
    wait_for(browser, "row busy", lambda d: rows(d, 'tr[data-id="1"][data-busy="true"]'))
    assert "busy" in rows(browser, 'tr[data-id="1"]')[0].text
    register(server.url, 2, metadata={"version": "2.0", "zone": "eu"})
    wait_for(browser, "second row", lambda d: rows(d, 'tr[data-id="2"]'))
    screenshot(browser, tmp_path / "service.png")

    # A deregistration removes the row.
    assert httpx.delete(server.url + "/v1/services/api/instances/1").status_code == 200
    wait_for(browser, "row gone", lambda d: not rows(d, 'tr[data-id="1"]'))

    # The event stream, live.
    browser.find_element(By.ID, "nav-events").click()
    wait_for(browser, "events", lambda d: rows(d, '#events li[data-kind="deregistered"]'))
    register(server.url, 3)
    wait_for(browser, "new event", lambda d: rows(d, '#events li[data-kind="registered"]')[0]
             .text.find("api/3") >= 0)  # fmt: skip
    screenshot(browser, tmp_path / "events.png")
    assert console_errors(browser) == []


def test_the_requirements_filter_shows_what_discover_picks(
    browser: WebDriver, server: Server, tmp_path: Path
) -> None:
    for iid, version in ((1, "1.0"), (2, "2.0"), (3, "2.0")):
        register(server.url, iid, metadata={"version": version})
    httpx.put(server.url + "/v1/services/api/instances/3/status", json={"busy": True})
    browser.get_log("browser")
    open_page(browser, server.url + "/ui/#/service/api")
    wait_for(browser, "rows", lambda d: len(rows(d, "#instances tbody tr")) == 3)
    field = browser.find_element(By.ID, "requirements")
    field.send_keys('{"version": "2.0", "busy": false}')
    browser.find_element(By.CSS_SELECTOR, "#filter button").click()
    picked = lambda d: "picks" in d.find_element(By.ID, "pick").text  # noqa: E731
    wait_for(browser, "a pick", picked)
    assert "discover picks 2 at 127.0.0.1:8002" in browser.find_element(By.ID, "pick").text
    assert [r.get_attribute("data-id") for r in rows(browser, "tr.match")] == ["2"]
    assert rows(browser, 'tr.picked[data-id="2"]')
    field.clear()
    field.send_keys('{"version": "9"}')
    browser.find_element(By.CSS_SELECTOR, "#filter button").click()
    wait_for(browser, "none", lambda d: "would find none" in d.find_element(By.ID, "pick").text)
    screenshot(browser, tmp_path / "filter.png")
    assert console_errors(browser) == []


def test_a_phone_reads_the_services_without_sideways_scrolling(
    browser: WebDriver, server: Server, tmp_path: Path
) -> None:
    register(server.url, 1, metadata={"version": "1.0", "region": "eu-west-1", "tags": ["a"]})
    browser.set_window_size(390, 844)
    try:
        for view in ("#/", "#/service/api"):
            open_page(browser, server.url + "/ui/" + view)
            wait_for(browser, "a row", lambda d: rows(d, "tbody tr"))
            width = browser.execute_script("return document.documentElement.scrollWidth")
            viewport = browser.execute_script("return window.innerWidth")
            assert width <= viewport, view
        screenshot(browser, tmp_path / "phone.png")
    finally:
        browser.set_window_size(1280, 900)


def test_an_acl_token_typed_in_is_kept_in_the_tab(browser: WebDriver, tmp_path: Path) -> None:
    served = Server(tmp_path / "data", "--acl", "--acl-bootstrap-token", "boot-secret")
    try:
        served.wait_ready()
        browser.get(served.url + "/ui/")
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        wait_for(browser, "401", lambda d: "401" in d.find_element(By.ID, "status").text, 10)
        headers = {"Authorization": "Bearer boot-secret"}
        body = {"service_type": "api", "instance_id": 1, "host": "127.0.0.1", "port": 80}
        assert httpx.post(served.url + "/v1/instances", json=body, headers=headers).is_success
        browser.find_element(By.ID, "token").send_keys("boot-secret")
        browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
        wait_for(browser, "api listed", lambda d: rows(d, 'tr[data-service="api"]'), 10)
        kept = browser.execute_script("return sessionStorage.getItem('jarvis-dns-token')")
        assert kept == "boot-secret"
        assert browser.execute_script("return localStorage.length") == 0  # not beyond the tab
    finally:
        browser.execute_script("sessionStorage.clear()")
        served.kill()


# -- what the page is served with (no browser needed) ------------------------------------


async def test_the_files_come_from_the_package_with_a_strict_policy(tmp_path: Path) -> None:
    from conftest import app_config, running_app

    async with running_app(app_config(tmp_path)) as app, httpx.AsyncClient() as c:
        moved = await c.get(app.http_url + "/ui")
        assert moved.status_code == 301 and moved.headers["Location"] == "/ui/"
        page = await c.get(app.http_url + "/ui/")
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        script = await c.get(app.http_url + "/ui/app.js")
        assert script.headers["Content-Type"].startswith("text/javascript")
        assert "http" not in script.text.split("'use strict';")[0]  # nothing from elsewhere
        for name in ("nope.js", "..%2Fapp.py", "%2e%2e%2fopenapi.json"):
            missing = await c.get(app.http_url + "/ui/" + name)
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_what_dns_answers_for_a_service_needs_read_on_it(tmp_path: Path) -> None:
    from conftest import app_config, running_app

    boot = {"Authorization": "Bearer boot"}
    config = app_config(tmp_path, store="", acl=True, acl_bootstrap_token="boot")
    async with running_app(config) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        body = {"service_type": "api", "instance_id": 1, "host": "10.0.0.1", "port": 80}
        assert (await c.post("/v1/instances", json=body, headers=boot)).status_code == 201
        assert (await c.get("/v1/services/api/dns")).status_code == 401
        made = await c.post(
            "/v1/acl/tokens", json={"policy": {"services": {"web": "read"}}}, headers=boot
        )
        other = {"Authorization": f"Bearer {made.json()['token']}"}
        assert (await c.get("/v1/services/api/dns", headers=other)).status_code == 403
        answer = (await c.get("/v1/services/api/dns", headers=boot)).json()
    srv, a, txt = answer["answers"]
    assert (srv["type"], srv["rcode"], a["type"], txt["type"]) == ("SRV", "NOERROR", "A", "TXT")
    assert srv["answer"][0].split()[-4:] == ["0", "100", "80", "1.api.jarvis.internal."]
    assert a["answer"][0].split()[-1] == "10.0.0.1"
    assert '"busy=false"' in txt["answer"][0]
