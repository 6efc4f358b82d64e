"""The pure parts: name classification and record data (no sockets)."""

from __future__ import annotations

import pytest

from jarvis_dns.discovery import tags_of
from jarvis_dns.dns import names
from jarvis_dns.dns.names import Kind, NameQuery
from jarvis_dns.dns.records import address_of, txt_strings
from jarvis_dns.models import Instance, Status

Z = "jarvis.internal."


@pytest.mark.parametrize(
    ("qname", "expected"),
    [
        (Z, NameQuery(Kind.APEX)),
        (f"ns.{Z}", NameQuery(Kind.NS_HOST)),
        (f"_web._tcp.{Z}", NameQuery(Kind.SERVICE, service="web")),
        (f"3._web._tcp.{Z}", NameQuery(Kind.SERVICE_INSTANCE, service="web", instance="3")),
        (f"web.{Z}", NameQuery(Kind.HOST, service="web")),
        (f"a-1.web.{Z}", NameQuery(Kind.INSTANCE_HOST, service="web", instance="a-1")),
        (f"_gpu._sub._web._tcp.{Z}", NameQuery(Kind.SUBTYPE, service="web", tag="gpu")),
        (f"_sub._web._tcp.{Z}", NameQuery(Kind.SUB, service="web")),
        (f"_services._dns-sd._udp.{Z}", NameQuery(Kind.SERVICES)),
        (f"_dns-sd._udp.{Z}", NameQuery(Kind.UDP)),
        (f"_udp.{Z}", NameQuery(Kind.UDP)),
        (f"_tcp.{Z}", NameQuery(Kind.TCP)),
        (f"a.b.c.{Z}", None),
        (f"_x.web.{Z}", None),
        (f"x._sub._web._tcp.{Z}", None),
        (f"web._tcp.{Z}", None),
        ("example.com.", None),
        ("xjarvis.internal.", None),
    ],
)
def test_parse(qname: str, expected: NameQuery | None) -> None:
    assert names.parse(qname, Z) == expected


def test_relative_and_normalize() -> None:
    assert names.normalize("A.B") == "a.b."
    assert names.relative("x.y.z.", "z.") == ["x", "y"]
    assert names.relative("x.z.", ".") == ["x", "z"]
    assert names.relative("z.", "z.") == []


def _inst(metadata: dict[str, object], busy: bool = False) -> Instance:
    return Instance(
        service_type="s", instance_id=1, host="h", port=1, metadata=metadata, weight=100,
        busy=busy, status=Status.ACTIVE, ttl_s=30, check=None, deregister_after_s=None,
        registered_at=0, last_heartbeat=0, status_since=0,
    )  # fmt: skip


def test_txt_follows_rfc6763() -> None:
    inst = _inst(
        {
            "v": 2,
            "ok": True,
            "nested": {"a": [1, None]},
            "bad=key": 1,
            "": 1,
            "Busy": "ignored: ours comes instead",
            "long": "x" * 300,
            "V": "duplicate of v, keys are case-insensitive",
            "ünï": "non-ASCII keys are not allowed",
            "text": "héllo",
        },
        busy=True,
    )
    assert txt_strings(inst) == [
        b"v=2",
        b"ok=true",
        b'nested={"a":[1,null]}',
        "text=héllo".encode(),
        b"busy=true",
        b"status=active",
    ]


def test_tags_come_from_tags_and_capabilities() -> None:
    inst = _inst({"tags": ["Blue", 3], "capabilities": {"gpu": True, "tpu": False}})
    assert tags_of(inst) == {"blue", "gpu"}


@pytest.mark.parametrize(
    ("host", "rtype"),
    [("10.0.0.1", 1), ("localhost", 1), ("::1", 28), ("fd00::1", 28), ("db.example", None)],
)
def test_addresses(host: str, rtype: int | None) -> None:
    found = address_of(host)
    assert (found[0] if found else None) == rtype
