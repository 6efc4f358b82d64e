"""ACL tokens in a cluster: two nodes on one real etcd. A token made on one node is in
force on the other within --acl refresh, a revoked one stops there too, and only the
secret's hash is in etcd."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from conftest import running_app
from etcd_cluster import EtcdCluster, running

from jarvis_dns import acl
from jarvis_dns.app import App
from jarvis_dns.config import Config

pytestmark = pytest.mark.etcd
BOOT = "boot-secret"
REFRESH_S = 0.2


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with running(tmp_path_factory.mktemp("etcd-acl")) as cluster:
        yield cluster


@asynccontextmanager
async def node(etcd: EtcdCluster, tmp_path: Path, name: str) -> AsyncIterator[App]:
    cfg = Config(
        http="127.0.0.1:0",
        dns=["127.0.0.1:0"],
        data_dir=str(tmp_path / name),
        zones_dir=str(tmp_path / "zones"),
        store=etcd.url("/acl-test"),
        node=name,
        acl=True,
        acl_bootstrap_token=BOOT,
        acl_refresh_s=REFRESH_S,
    )
    async with running_app(cfg) as app:
        yield app


async def status_within(c: httpx.AsyncClient, secret: str, want: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while True:
        r = await c.get("/v1/services/auth", headers={"Authorization": f"Bearer {secret}"})
        if r.status_code == want or time.monotonic() > deadline:
            return r.status_code
        await asyncio.sleep(0.05)


async def test_tokens_reach_every_node(etcd: EtcdCluster, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(node(etcd, tmp_path, "a"))
        b = await stack.enter_async_context(node(etcd, tmp_path, "b"))
        ca = await stack.enter_async_context(httpx.AsyncClient(base_url=a.http_url))
        cb = await stack.enter_async_context(httpx.AsyncClient(base_url=b.http_url))
        policy = {"services": {"auth": "read"}}
        boot = {"Authorization": f"Bearer {BOOT}"}
        r = await ca.post("/v1/acl/tokens", json={"policy": policy}, headers=boot)
        made = r.json()
        assert await status_within(cb, made["token"], 200, 5.0) == 200
        stored = etcd_values(etcd, "/acl-test/")
        assert [v["secret_hash"] for v in stored] == [acl.hash_secret(made["token"])]
        assert all(made["token"] not in json.dumps(v) for v in stored)
        r = await cb.delete(f"/v1/acl/tokens/{made['accessor']}", headers=boot)
        assert r.status_code == 200
        assert await status_within(ca, made["token"], 401, 5.0) == 401


def etcd_values(etcd: EtcdCluster, prefix: str) -> list[dict[str, object]]:
    """Every ACL token record in etcd, read with etcd's own JSON gateway."""
    import base64

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"key": b64(prefix), "range_end": b64(end)}).encode()
    request = urllib.request.Request(f"http://{etcd.endpoints[0]}/v3/kv/range", data=body)
    with urllib.request.urlopen(request, timeout=5) as answer:
        kvs = json.loads(answer.read()).get("kvs", [])
    found = []
    for kv in kvs:
        if ".acl/tokens/" in base64.b64decode(kv["key"]).decode():
            found.append(json.loads(base64.b64decode(kv["value"])))
    return found
