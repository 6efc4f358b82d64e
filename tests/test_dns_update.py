"""DNS UPDATE (RFC 2136) with TSIG (RFC 8945) against a real server: docs/dns.md's
nsupdate session, refusals that change nothing, prerequisites, the mapping's edges."""

from __future__ import annotations

import asyncio
import base64
import random
import re
import shlex
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import httpx
import pytest
from conftest import app_config, running_app, serve_refused

from jarvis_dns.cli import build_parser, config_from_args
from jarvis_dns.dns import tsig

DOC = Path(__file__).resolve().parents[1] / "docs" / "dns.md"
ZONE = "jarvis.internal."
SECRET = base64.b64encode(b"a test secret of thirty-two byte").decode()
OTHER = base64.b64encode(b"another secret, not the server's").decode()
pytestmark = pytest.mark.skipif(shutil.which("nsupdate") is None, reason="needs nsupdate")


def section() -> str:
    return DOC.read_text().split("## Register with nsupdate")[1].split("\n## ")[0]


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", section(), re.DOTALL)


def serve_args() -> list[str]:
    line = next(ln for ln in bash_blocks()[0].splitlines() if ln.startswith("jarvis-dns serve"))
    return shlex.split(line.replace("$SECRET", SECRET))[2:]


def sessions() -> list[tuple[str, str]]:
    """docs/dns.md's nsupdate runs: (the -y argument, the script), in order."""
    found = re.findall(r"nsupdate -y (\S+) <<'EOF'\n(.*?)\nEOF", bash_blocks()[1], re.DOTALL)
    return [(key.replace("$SECRET", SECRET), script + "\n") for key, script in found]


class Server:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = app.dns_addresses[0][1]
        self.http = httpx.AsyncClient(base_url=app.http_url, timeout=10)

    async def nsupdate(self, key: str | None, script: str) -> tuple[int, str]:
        script = script.replace("server 127.0.0.1 9053", f"server 127.0.0.1 {self.port}")
        args = ["-y", key] if key else []
        proc = await asyncio.create_subprocess_exec(
            "nsupdate",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(script.encode()), 30)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    async def ask(self, name: str, rdtype: str) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        return await dns.asyncquery.udp(query, "127.0.0.1", port=self.port, timeout=3)

    async def srv(self, name: str) -> list[str]:
        reply = await self.ask(name, "SRV")
        return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)

    async def send(self, update: dns.message.Message, tcp: bool = False) -> dns.message.Message:
        send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
        return await send(update, "127.0.0.1", port=self.port, timeout=5)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    parsed, _ = config_from_args(build_parser().parse_args(["serve", *serve_args()]), {})
    config = app_config(
        tmp_path,
        tsig_keys=[*parsed.tsig_keys, f"ops-key:hmac-sha512:{SECRET}"],
        update_allow=[*parsed.update_allow, "ops-key:*"],
    )
    async with running_app(config) as app:
        server = Server(app)
        yield server
        await server.http.aclose()


KEYRING = dns.tsigkeyring.from_text({"web-key.": SECRET})


def update(*, key: str | None = "web-key.", algorithm: str = "hmac-sha256") -> Any:
    msg = dns.update.UpdateMessage(ZONE)
    if key is not None:
        msg.use_tsig(dns.tsigkeyring.from_text({key: SECRET}), key, algorithm=algorithm)
    return msg


def register_web(msg: Any, iid: int = 1, address: str = "10.0.0.21", ttl: int = 30) -> Any:
    msg.add(f"{iid}._web._tcp.jarvis.internal.", ttl, "SRV", f"0 100 8080 {iid}.web.{ZONE}")
    msg.add(f"{iid}.web.jarvis.internal.", ttl, "A", address)
    return msg


# -- the docs' session


async def test_the_readme_session_registers_marks_busy_and_deregisters(server: Server) -> None:
    (key, register), (_, busy), (_, delete) = sessions()
    rc, out = await server.nsupdate(key, register)
    assert rc == 0, out
    found = await server.http.post("/v1/discover", json={"service_type": "web"})
    assert found.status_code == 200
    inst = found.json()
    assert (inst["host"], inst["port"], inst["ttl_s"]) == ("10.0.0.21", 8080, 30.0)
    assert inst["metadata"] == {"version": "2.0", "tags": ["blue"]}
    assert await server.srv(f"_web._tcp.{ZONE}") == [f"0 100 8080 1.web.{ZONE}"]
    assert await server.srv(f"_blue._sub._web._tcp.{ZONE}") == [f"0 100 8080 1.web.{ZONE}"]
    # The same instance as any other: it heartbeats over HTTP.
    beat = await server.http.put("/v1/services/web/instances/1/heartbeat", json={})
    assert beat.status_code == 200

    rc, out = await server.nsupdate(key, busy)
    assert rc == 0, out
    assert await server.srv(f"_web._tcp.{ZONE}") == [f"10 1 8080 1.web.{ZONE}"]
    got = (await server.http.get("/v1/services/web/instances/1")).json()
    assert got["busy"] is True and got["metadata"] == {"version": "2.0", "tags": ["blue"]}

    rc, out = await server.nsupdate(key, delete)
    assert rc == 0, out
    gone = await server.http.post("/v1/discover", json={"service_type": "web"})
    assert gone.status_code == 404
    assert (await server.ask(f"_web._tcp.{ZONE}", "SRV")).rcode() == dns.rcode.NXDOMAIN
    events = (await server.http.get("/v1/events")).json()["events"]
    assert [e["kind"] for e in events] == ["registered", "busy", "deregistered"]
    assert events[-1]["reason"] == "deregistered by DNS UPDATE (key web-key)"

    rc, out = await server.nsupdate(key, busy)  # its prerequisite fails now
    assert rc != 0 and "NXRRSET" in out


# -- refusals change nothing


@pytest.mark.parametrize(
    ("key", "answer"),
    [
        (f"hmac-sha256:web-key:{OTHER}", "NOTAUTH(BADSIG)"),
        (f"hmac-sha256:nobody:{SECRET}", "NOTAUTH(BADKEY)"),
        (f"hmac-sha512:web-key:{SECRET}", "NOTAUTH(BADKEY)"),  # the key's algorithm is sha256
        (None, "REFUSED"),
    ],
)
async def test_a_bad_or_missing_signature_changes_nothing(
    server: Server, key: str | None, answer: str
) -> None:
    _, register = sessions()[0]
    rc, out = await server.nsupdate(key, register)
    assert rc != 0 and f"update failed: {answer}" in out
    assert server.app.view.index == 0
    stats = (await server.http.get("/v1/health")).json()["dns"]
    assert stats["updates" if key is None else "tsig_errors"] == 1


async def test_a_key_not_allowed_for_the_service_is_refused(server: Server) -> None:
    key, register = sessions()[0]
    rc, out = await server.nsupdate(key, register.replace("_web.", "_db.").replace(".web.", ".db."))
    assert rc != 0 and "update failed: REFUSED" in out
    assert server.app.view.index == 0
    # One service it may not change refuses the whole update.
    msg = register_web(update())
    msg.add("1._db._tcp.jarvis.internal.", 30, "SRV", "0 100 80 box.example.net.")
    assert (await server.send(msg)).rcode() == dns.rcode.REFUSED
    assert server.app.view.index == 0


async def test_a_stale_signature_is_badtime_and_signed(server: Server) -> None:
    key = dns.tsig.Key("web-key.", SECRET, "hmac-sha256")
    wire = register_web(update(key=None)).to_wire()
    stale, _ = tsig.Signer(key, b"").sign(wire, int(__import__("time").time()) - 3600)
    reply_wire = await _udp(server, stale)
    reply = dns.message.from_wire(reply_wire, keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH
    assert reply.tsig is not None and reply.tsig[0].error == dns.rcode.BADTIME
    assert len(reply.tsig[0].other) == 6 and len(reply.tsig[0].mac) == 32  # our time, signed
    assert server.app.view.index == 0


async def _udp(server: Server, wire: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()

    class Once(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not future.done():
                future.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Once, remote_addr=("127.0.0.1", server.port))
    try:
        transport.sendto(wire)
        return await asyncio.wait_for(future, 5)
    finally:
        transport.close()


# -- prerequisites (RFC 2136 2.4)


@pytest.mark.parametrize(
    ("prereq", "rcode"),
    [
        (lambda m: m.absent("1._web._tcp.jarvis.internal."), dns.rcode.YXDOMAIN),
        (lambda m: m.present("9._web._tcp.jarvis.internal."), dns.rcode.NXDOMAIN),
        (lambda m: m.absent("1._web._tcp.jarvis.internal.", "SRV"), dns.rcode.YXRRSET),
        (lambda m: m.present("1._web._tcp.jarvis.internal.", "AAAA"), dns.rcode.NXRRSET),
        (lambda m: m.present("1.web.jarvis.internal.", "A", "10.9.9.9"), dns.rcode.NXRRSET),
    ],
)
async def test_a_failed_prerequisite_changes_nothing(
    server: Server, prereq: Any, rcode: int
) -> None:
    assert (await server.send(register_web(update()))).rcode() == dns.rcode.NOERROR
    index = server.app.view.index
    msg = register_web(update(), address="10.0.0.99")
    prereq(msg)
    assert (await server.send(msg)).rcode() == rcode
    assert server.app.view.index == index
    assert server.app.view.get("web", 1).host == "10.0.0.21"


async def test_met_prerequisites_let_the_update_through(server: Server) -> None:
    assert (await server.send(register_web(update()))).rcode() == dns.rcode.NOERROR
    msg = register_web(update(), address="10.0.0.99")
    msg.present("1.web.jarvis.internal.", "A", "10.0.0.21")  # value-dependent, exact
    msg.present("1._web._tcp.jarvis.internal.", "SRV")
    msg.absent("2._web._tcp.jarvis.internal.")
    assert (await server.send(msg, tcp=True)).rcode() == dns.rcode.NOERROR
    assert server.app.view.get("web", 1).host == "10.0.0.99"


# -- what an update maps onto


async def test_txt_fields_host_names_and_dns_sd_ptr(server: Server) -> None:
    msg = update(key="ops-key.", algorithm="hmac-sha512")
    msg.add("edge._api._tcp.jarvis.internal.", 60, "SRV", "0 7 443 box.example.net.")
    msg.add("edge._api._tcp.jarvis.internal.", 60, "TXT", '"busy=true" "status=maintenance"')
    msg.add("edge._api._tcp.jarvis.internal.", 60, "TXT", '"region=eu" "flag" "n=5"')
    msg.add("_api._tcp.jarvis.internal.", 60, "PTR", "edge._api._tcp.jarvis.internal.")
    assert (await server.send(msg)).rcode() == dns.rcode.NOERROR
    inst = server.app.view.get("api", "edge")
    assert (inst.host, inst.port, inst.weight, inst.ttl_s) == ("box.example.net", 443, 7, 60.0)
    assert inst.busy and inst.status.value == "maintenance"
    assert inst.metadata == {"region": "eu", "flag": True, "n": "5"}

    msg = update(key="ops-key.", algorithm="hmac-sha512")
    msg.delete("edge._api._tcp.jarvis.internal.", "TXT")
    msg.add("edge._api._tcp.jarvis.internal.", 60, "TXT", '"status=active"')
    assert (await server.send(msg)).rcode() == dns.rcode.NOERROR
    inst = server.app.view.get("api", "edge")
    assert inst.metadata == {} and inst.status.value == "active" and inst.busy


@pytest.mark.parametrize(
    ("build", "rcode"),
    [
        (lambda m: m.add("1._web._tcp.jarvis.internal.", 30, "A", "10.0.0.1"), "REFUSED"),
        (lambda m: m.add("www.jarvis.internal.", 30, "A", "10.0.0.1"), "REFUSED"),
        (lambda m: m.add("1._web._tcp.example.com.", 30, "SRV", "0 1 80 a.b."), "NOTZONE"),
        (lambda m: m.add("1._web._tcp.jarvis.internal.", 30, "SRV", "0 0 80 a.b."), "REFUSED"),
        (lambda m: m.add("1._web._tcp.jarvis.internal.", 0, "SRV", "0 1 80 a.b."), "REFUSED"),
        (lambda m: register_web(m, iid=1).delete("1.web.jarvis.internal.", "A"), "REFUSED"),
        (
            lambda m: m.add("1._web._tcp.jarvis.internal.", 30, "SRV", f"0 1 80 1.web.{ZONE}"),
            "REFUSED",  # its own host name, and no address for it
        ),
        (
            lambda m: m.add("1._web._tcp.jarvis.internal.", 30, "SRV", f"0 1 80 x.web.{ZONE}"),
            "REFUSED",  # a target in the zone that is not its own name
        ),
        (lambda m: m.add("_web._tcp.jarvis.internal.", 30, "PTR", "x.example.com."), "REFUSED"),
        (lambda m: m.add("-bad-._web._tcp.jarvis.internal.", 30, "TXT", "a=b"), "REFUSED"),
    ],
)
async def test_updates_the_registry_cannot_hold_are_refused(
    server: Server, build: Any, rcode: str
) -> None:
    msg = update()
    build(msg)
    assert dns.rcode.to_text((await server.send(msg)).rcode()) == rcode
    assert server.app.view.index == 0


async def test_an_update_for_another_zone_is_notauth(server: Server) -> None:
    msg = dns.update.UpdateMessage("example.com.")
    msg.use_tsig(KEYRING, "web-key.")
    msg.add("1._web._tcp.example.com.", 30, "SRV", "0 1 80 a.b.")
    assert (await server.send(msg)).rcode() == dns.rcode.NOTAUTH


async def test_deleting_what_is_not_there_is_noerror_and_changes_nothing(server: Server) -> None:
    msg = update()
    msg.delete("7._web._tcp.jarvis.internal.")
    assert (await server.send(msg)).rcode() == dns.rcode.NOERROR
    assert server.app.view.index == 0


async def test_an_unparsable_update_is_formerr(server: Server) -> None:
    wire = register_web(update(key=None)).to_wire()
    reply = dns.message.from_wire(await _udp(server, wire[:-3]))  # the last RR cut short
    assert reply.rcode() == dns.rcode.FORMERR
    assert server.app.view.index == 0


def test_keys_and_rules_are_checked_at_start() -> None:
    from jarvis_dns.dns.permits import TransferPolicy, UpdatePolicy
    from jarvis_dns.errors import ConfigError

    for bad in ["k:hmac-sha256", "k:hmac-whatever:" + SECRET, "k:hmac-sha256:not base64!"]:
        with pytest.raises(ConfigError):
            tsig.parse_key(bad)
    with pytest.raises(ConfigError):
        tsig.Keyring([f"k:hmac-sha256:{SECRET}", f"K.:hmac-sha256:{SECRET}"])  # one name
    with pytest.raises(ConfigError):
        UpdatePolicy(["nobody:web"], ["k"])
    with pytest.raises(ConfigError):
        UpdatePolicy(["k"], ["k"])
    with pytest.raises(ConfigError):
        TransferPolicy(["key:nobody"], ["k"])
    with pytest.raises(ConfigError):
        TransferPolicy(["10.0.0.0/33"], ["k"])
    policy = UpdatePolicy(["k:web-*", "K.:db"], ["k"])
    assert policy.allows("k", "web-a") and policy.allows("k", "db")
    assert not policy.allows("k", "web") and not policy.allows(None, "db")
    transfer = TransferPolicy(["10.1.0.0/16", "key:k"], ["k"])
    assert transfer.allows("10.1.2.3", None) and transfer.allows("::ffff:10.1.2.3", None)
    assert transfer.allows("192.0.2.1", "k") and not transfer.allows("192.0.2.1", None)


async def test_mangled_messages_never_break_the_server(server: Server) -> None:
    """Cut, flipped and padded UPDATEs, transfers and signed queries: every reply parses,
    nothing raises, and the server answers afterwards."""
    rng = random.Random(2136)
    axfr = dns.message.make_query(ZONE, "AXFR")
    axfr.use_tsig(KEYRING, "web-key.")
    signed = dns.message.make_query(f"_web._tcp.{ZONE}", "SRV")
    signed.use_tsig(KEYRING, "web-key.")
    seeds = [
        register_web(update()).to_wire(),
        register_web(update(key=None)).to_wire(),
        axfr.to_wire(),
        signed.to_wire(),
    ]
    operations = server.app.dns.operations
    for _ in range(1500):
        wire = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(max(1, len(wire)))
            kind = rng.randrange(3)
            if kind == 0 and wire:
                wire[at] ^= 1 << rng.randrange(8)
            elif kind == 1:
                del wire[at:]
            else:
                wire[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
        udp = rng.random() < 0.5
        async for reply in operations.handle(bytes(wire), "127.0.0.1", udp):
            dns.message.from_wire(reply, keyring=False)
    rc, out = await server.nsupdate(*sessions()[0])
    assert rc == 0, out


@pytest.mark.parametrize(
    ("flags", "env", "says"),
    [
        (["--tsig-key", "web-key:hmac-sha256:not base64!"], {}, "--tsig-key web-key"),
        (
            ["--update-allow", "nobody:web"],
            {"JARVIS_DNS_TSIG_KEY": f"k:hmac-sha256:{SECRET}"},
            "nobody",
        ),
        (["--transfer-allow", "10.0.0.0/99"], {}, "--transfer-allow"),
        (["--notify", "ns.example.net:53"], {}, "--notify"),
    ],
)
def test_serve_refuses_bad_keys_and_rules_with_one_line(
    tmp_path: Path, flags: list[str], env: dict[str, str], says: str
) -> None:
    lines = serve_refused(tmp_path, *flags, env=env)
    assert len(lines) == 1 and says in lines[0], lines
