"""Make docs/dashboard.png and docs/dashboard-service.png: the web dashboard of a small
fleet with some traffic, in headless chromium (the browser tests' setup).

    .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from conftest import free_ports

DOCS = Path(__file__).parent.parent / "docs"
FLEET = {"api": 4, "auth": 3, "billing": 2, "search": 5}
TRAFFIC_S = 25.0  # a few sparkline samples (one every 5 s)


def serve(data: str) -> tuple[subprocess.Popen[bytes], str, int]:
    http, port = free_ports(2)
    argv = [sys.executable, "-m", "jarvis_dns", "serve", "--http", f"127.0.0.1:{http}",
            "--dns", f"127.0.0.1:{port}", "--data-dir", data, "--zones-dir", data,
            "--no-active-checks", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(argv)
    url = f"http://127.0.0.1:{http}"
    for _ in range(200):
        try:
            if httpx.get(url + "/v1/health").status_code == 200:
                return proc, url, port
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def fleet(url: str) -> None:
    for svc, n in FLEET.items():
        for i in range(1, n + 1):
            meta = {"version": f"1.{i % 3}", "zone": random.choice(["eu-west", "us-east"])}
            body = {"service_type": svc, "instance_id": i, "host": f"10.0.{len(svc)}.{i}",
                    "port": 8000 + i, "metadata": meta}  # fmt: skip
            httpx.post(url + "/v1/instances", json=body).raise_for_status()
    httpx.put(url + "/v1/services/api/instances/2/status", json={"busy": True})
    httpx.put(url + "/v1/services/search/instances/5/status", json={"status": "maintenance"})
    body = {"service_type": "billing", "instance_id": 3, "host": "10.0.7.3", "port": 8003}
    httpx.post(url + "/v1/instances", json={**body, "ttl_s": 1}).raise_for_status()


def traffic(url: str, port: int, seconds: float) -> None:
    until = time.monotonic() + seconds
    rng = random.Random(7)
    while time.monotonic() < until:
        svc = rng.choice(list(FLEET))
        name = f"_{svc}._tcp.jarvis.internal." if rng.random() < 0.5 else f"{svc}.jarvis.internal."
        query = dns.message.make_query(name, "SRV" if name.startswith("_") else "A")
        for _ in range(rng.randint(1, 40)):
            dns.query.udp(query, "127.0.0.1", port=port, timeout=1)
        iid = rng.randint(1, FLEET[svc])
        httpx.put(f"{url}/v1/services/{svc}/instances/{iid}/heartbeat", json={"metrics": {
            "cpu": round(rng.random(), 2)}})  # fmt: skip
        time.sleep(0.05)


def main() -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1200,760"):  # fmt: skip
        options.add_argument(arg)
    with tempfile.TemporaryDirectory() as data:
        proc, url, port = serve(data)
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            fleet(url)
            driver.get(url + "/ui/")
            traffic(url, port, TRAFFIC_S)
            driver.save_screenshot(str(DOCS / "dashboard.png"))
            driver.get(url + "/ui/#/service/api")
            WebDriverWait(driver, 5).until(lambda d: "1.api" in d.find_element(By.ID, "dns").text)
            driver.save_screenshot(str(DOCS / "dashboard-service.png"))
        finally:
            driver.quit()
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
