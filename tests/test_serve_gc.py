"""serve() keeps Python's cyclic collector off the restored registry: what the store
restored is frozen (no later collection walks it), and what arrives later is not.

Runs serve() in a child process: freezing and thresholds are process-wide, and the test
process must keep its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jarvis_dns.app import GC_THRESHOLDS

CHILD = r"""
import asyncio, gc, json, os, signal, sys, time
from jarvis_dns.app import serve
from jarvis_dns.config import Config
from jarvis_dns.models import Batch, Instance, Status
from jarvis_dns.store.sqlite import SqliteStore

data = sys.argv[1]
now = time.time()
restored = [
    Instance(service_type="api", instance_id=i, host="127.0.0.1", port=1024 + i,
             metadata={"tags": ["a"]}, weight=100, busy=False, status=Status.ACTIVE,
             ttl_s=3600.0, check=None, deregister_after_s=None,
             registered_at=now, last_heartbeat=now, status_since=now)
    for i in range(1, 201)
]

async def seed():
    store = SqliteStore(os.path.join(data, "registry.db"))
    await store.load()
    await store.commit(Batch(puts=restored))
    await store.close()

asyncio.run(seed())
del restored

def ready(app):
    collectable = {id(o) for o in gc.get_objects()}
    later = {"tags": ["made after start"]}  # a container the collector tracks
    instances = list(app.view.all_instances())
    print(json.dumps({
        "instances": len(instances),
        "restored_collectable": sum(id(i) in collectable for i in instances),
        "later_collectable": id(later) in {id(o) for o in gc.get_objects()},
        "threshold": gc.get_threshold(),
    }), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

config = Config(http="127.0.0.1:0", dns=["127.0.0.1:0"], data_dir=data,
                zones_dir=os.path.join(data, "zones"), active_checks=False)
asyncio.run(serve(config, ready))
"""


def test_restored_registry_is_frozen_and_later_objects_are_not(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("{"))
    seen = json.loads(line)
    assert seen["instances"] == 200
    assert seen["restored_collectable"] == 0
    assert seen["later_collectable"] is True
    assert seen["threshold"] == list(GC_THRESHOLDS)
