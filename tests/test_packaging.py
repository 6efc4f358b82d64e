"""`pip install .` gives the console script, the package data and the dns_client shim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_package_has_shim_spec_and_entry_point(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
         "--target", str(target), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    assert (target / "dns_client.py").exists()
    assert (target / "bin" / "jarvis-dns").exists()
    probe = (
        "import json, dns_client, jarvis_dns.http.api as api, jarvis_dns.http.ui as ui;"
        "from dns_client import DNSClient, ServiceConfig;"
        "print(json.dumps([dns_client.__file__, api.__file__, "
        "json.loads(api.openapi_text())['openapi'], sorted(ui.FILES)]))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    shim, api_file, version, dashboard = json.loads(out.stdout)
    assert shim.startswith(str(target)) and api_file.startswith(str(target))
    assert version.startswith("3.")
    assert dashboard == ["app.js", "index.html", "style.css"]  # the dashboard's files
