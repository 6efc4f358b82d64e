"""docs/dns.md's "System resolver setup" snippets for nginx and systemd-resolved really send
jarvis.internal to jarvis-dns (the dnsmasq snippet is tested in test_dns_dig.py).

Both programs run on loopback as children of the test and are stopped by their PID. nginx
runs from a configuration in tmp_path. systemd-resolved needs root: it runs in a private
mount and PID namespace (unshare) where tmp_path directories stand in for /etc/systemd and
/run, next to a private D-Bus daemon, so the host's resolver and bus are never touched and
everything it started dies with the namespace. Where it is not installed, it runs from
its Debian packages unpacked into a cache directory (``apt-get download`` and
``dpkg -x``, nothing installed), and its user exists only in the namespace's /etc/passwd."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes.util
import fcntl
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rdatatype
import httpx
import psutil
import pytest
from aiohttp import web
from conftest import free_port
from dns_helpers import (
    FakeClock,
    dns_path,  # noqa: F401  (autouse: both paths)
    example_registry,
    running,
)
from ledger import Ledger

from jarvis_dns.models import InstanceSpec, Status

DOC = Path(__file__).resolve().parent.parent / "docs" / "dns.md"
DOC_DNS = "127.0.0.1:9053"
DEADLINE_S = 20.0

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
# Unpacked together so that resolved, resolvectl and their private library agree.
RESOLVED_PACKAGES = ("systemd-resolved", "libnss-resolve", "libsystemd-shared")
MULTIARCH = "usr/lib/x86_64-linux-gnu"


def _unpacked_resolved() -> Path | None:
    """systemd-resolved's Debian packages unpacked (``apt-get download`` + ``dpkg -x``)
    into a cache directory shared by test runs; None when apt cannot get them."""
    cache = Path(tempfile.gettempdir()) / f"jarvis-dns-test-resolved-{os.getuid()}"
    root = cache / "root"
    if (root / "lib/systemd/systemd-resolved").exists():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        return None
    cache.mkdir(exist_ok=True)
    with open(cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be unpacking it now
        if (root / "lib/systemd/systemd-resolved").exists():
            return root
        debs = cache / "debs"
        debs.mkdir(exist_ok=True)
        for attempt in range(2):
            got = subprocess.run(["apt-get", "download", *RESOLVED_PACKAGES], cwd=debs,
                                 capture_output=True, timeout=300)  # fmt: skip
            if got.returncode == 0:
                break
            if attempt == 0:  # a fresh machine has no package lists yet
                subprocess.run(["apt-get", "update"], capture_output=True, timeout=600)
        else:
            return None
        staging = cache / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True, timeout=120)
        staging.rename(root)
    return root


def _installed(*paths: str) -> str | None:
    return next((p for p in paths if Path(p).exists()), None)


_SYSTEM_RESOLVED = _installed("/lib/systemd/systemd-resolved", "/usr/lib/systemd/systemd-resolved")
_UNPACKED = None if _SYSTEM_RESOLVED else _unpacked_resolved()
RESOLVED = _SYSTEM_RESOLVED or str((_UNPACKED or Path("/")) / "lib/systemd/systemd-resolved")
RESOLVECTL = (
    shutil.which("resolvectl")
    if _SYSTEM_RESOLVED
    else str((_UNPACKED or Path("/")) / "usr/bin/resolvectl")
) or "/usr/bin/resolvectl"
# The unpacked private library, and libnss_resolve for getent: found through this.
RESOLVED_ENV = (
    {"LD_LIBRARY_PATH": f"{_UNPACKED / MULTIARCH / 'systemd'}:{_UNPACKED / MULTIARCH}"}
    if _UNPACKED
    else {}
)
NSS_RESOLVE = ctypes.util.find_library("nss_resolve") or (
    str(_UNPACKED / MULTIARCH / "libnss_resolve.so.2") if _UNPACKED else None
)


# -- the docs -------------------------------------------------------------------------


def _section() -> str:
    text = DOC.read_text()
    start = text.index("## System resolver setup\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _block(lang: str) -> str:
    blocks = re.findall(rf"```{lang}\n(.*?)```", _section(), re.S)
    assert len(blocks) == 1, f"one ```{lang} block expected in 'System resolver setup'"
    return str(blocks[0])


def _sub(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} once in {text!r}"
    return text.replace(old, new)


async def _eventually(what: str, probe: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def test_the_readme_has_the_snippets_these_tests_run() -> None:
    nginx = _block("nginx").splitlines()
    assert "resolver 127.0.0.1:9053 valid=5s;" in nginx
    assert "        set $auth http://auth.jarvis.internal:8443;" in nginx
    assert "        proxy_pass $auth;" in nginx
    assert _block("ini") == "[Resolve]\nDNS=127.0.0.1:9053\nDomains=~jarvis.internal\n"
    assert "`/etc/systemd/resolved.conf.d/jarvis-dns.conf`" in _section()


# -- nginx ----------------------------------------------------------------------------


def _nginx_conf(tmp: Path, dns_port: int, listen: int, backend_port: int, valid: str) -> str:
    """The README's nginx block with the test's ports, inside a minimal nginx.conf."""
    block = _block("nginx")
    # Exactly the README's resolver line, with only the port and the cache time changed.
    block = _sub(block, "resolver 127.0.0.1:9053 valid=5s;",
                 f"resolver 127.0.0.1:{dns_port} valid={valid};")  # fmt: skip
    block = _sub(block, "listen 8000;", f"listen 127.0.0.1:{listen};")
    block = _sub(block, "auth.jarvis.internal:8443;", f"auth.jarvis.internal:{backend_port};")
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"    {kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\nerror_log {tmp / 'error.log'} notice;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log {tmp / 'access.log'};\n{temp}    resolver_timeout 3s;\n"
        f"{block}}}\n"
    )


@contextlib.asynccontextmanager
async def _backends(port: int, hosts: dict[int, str]) -> AsyncIterator[None]:
    """One tiny HTTP server per instance, each answering 'hello from auth N'."""
    runners: list[web.AppRunner] = []
    try:
        for n, host in hosts.items():

            async def hello(_: web.Request, n: int = n) -> web.Response:
                return web.Response(text=f"hello from auth {n}")

            app = web.Application()
            app.router.add_get("/", hello)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, host, port).start()
        yield
    finally:
        for runner in runners:
            await runner.cleanup()


def _stop(proc: subprocess.Popen[bytes], sig: str = "terminate") -> None:
    """Stop a child we started, then any of its children left over (nginx workers)."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    getattr(proc, sig)()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        child.kill()


@contextlib.asynccontextmanager
async def _nginx(tmp: Path, conf: str, listen: int) -> AsyncIterator[str]:
    (tmp / "nginx.conf").write_text(conf)
    err = tmp / "error.log"
    argv = [NGINX, "-p", f"{tmp}/", "-e", str(err), "-c", str(tmp / "nginx.conf"),
            "-g", f"daemon off; pid {tmp / 'nginx.pid'};"]  # fmt: skip
    with open(tmp / "nginx.out", "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:

        async def listening() -> bool:
            if proc.poll() is not None:
                log = (tmp / "nginx.out").read_text() + (err.read_text() if err.exists() else "")
                raise AssertionError(f"nginx exited with {proc.returncode}:\n{log}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", listen)
            except OSError:
                return False
            writer.close()
            await writer.wait_closed()
            return True

        await _eventually("nginx to listen", listening)
        yield f"http://127.0.0.1:{listen}/"
    finally:
        await asyncio.to_thread(_stop, proc)


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
async def test_the_nginx_snippet_follows_the_registry(tmp_path: Path) -> None:
    registry = Ledger(clock=FakeClock())
    async with contextlib.AsyncExitStack() as stack:
        # Two backends on one port, on two loopback addresses: which one answers shows
        # which A record nginx used.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        await stack.enter_async_context(_backends(port, {1: "127.0.0.1", 2: "127.0.0.2"}))
        registry.register(InstanceSpec("auth", 1, "127.0.0.1", port))
        server = await stack.enter_async_context(running(registry))
        listen = free_port()
        # valid=1s instead of the README's 5s only to keep the test short.
        conf = _nginx_conf(tmp_path, server.addresses[0][1], listen, port, valid="1s")
        url = await stack.enter_async_context(_nginx(tmp_path, conf, listen))
        client = await stack.enter_async_context(httpx.AsyncClient(trust_env=False, timeout=5))
        seen: list[str] = []

        def answers(text: str) -> Callable[[], Awaitable[bool]]:
            async def probe() -> bool:
                reply = await client.get(url)
                assert reply.status_code == 200, (reply.status_code, reply.text)
                seen.append(reply.text)
                return reply.text == text

            return probe

        assert (await client.get(url)).text == "hello from auth 1"

        # auth/1 busy, auth/2 registered: the A answer holds only auth/2 now.
        registry.register(InstanceSpec("auth", 2, "127.0.0.2", port))
        registry.set_status("auth", 1, busy=True)
        await _eventually("nginx to use auth/2", answers("hello from auth 2"))

        # auth/1 idle again, auth/2 dead.
        registry.set_status("auth", 1, busy=False)
        registry.set_status("auth", 2, status=Status.DEAD)
        await _eventually("nginx to use auth/1", answers("hello from auth 1"))

        # auth/2 back, auth/1 deregistered.
        registry.set_status("auth", 2, status=Status.ACTIVE)
        registry.deregister("auth", 1)
        await _eventually("nginx to use auth/2", answers("hello from auth 2"))
        for _ in range(5):
            assert (await client.get(url)).text == "hello from auth 2"
    assert set(seen) <= {"hello from auth 1", "hello from auth 2"}


# -- systemd-resolved -----------------------------------------------------------------


def _resolved_missing() -> str | None:
    """Why systemd-resolved cannot run here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (a private mount namespace for /etc/systemd and /run)"
    for tool in (RESOLVED, RESOLVECTL, "dbus-daemon", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return (
                f"{tool} is not installed, nor could apt-get download systemd-resolved "
                "(Debian: systemd-resolved, dbus, util-linux)"
            )
    probe = subprocess.run(["unshare", "--mount", "--pid", "--fork", "true"],
                           capture_output=True, timeout=10)  # fmt: skip
    if probe.returncode != 0:
        return f"unshare is not allowed here: {probe.stderr.decode().strip()}"
    return None


_RESOLVED_MISSING = _resolved_missing()
needs_resolved = pytest.mark.skipif(_RESOLVED_MISSING is not None, reason=str(_RESOLVED_MISSING))

# Only for the test, next to the README's file: no multicast protocols on the host's
# links, no fallback servers, and the stub on a free loopback port instead of
# 127.0.0.53:53 (which a host's own resolved may hold).
TEST_DROP_IN = """[Resolve]
LLMNR=no
MulticastDNS=no
FallbackDNS=
DNSStubListener=no
DNSStubListenerExtra=127.0.0.1:{stub}
"""

DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/test-system-bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow send_requested_reply="true"/>
    <allow receive_requested_reply="true"/>
  </policy>
</busconfig>
"""

# Runs as PID 1 of the new PID namespace: when it dies, the kernel kills the rest.
NAMESPACE_SH = """set -e
mount --bind "$1/etc-systemd" /etc/systemd
mount --bind "$1/run" /run
[ -z "$3" ] || mount --bind "$3" /etc/nsswitch.conf
[ ! -e "$1/passwd" ] || mount --bind "$1/passwd" /etc/passwd
[ ! -e "$1/group" ] || mount --bind "$1/group" /etc/group
trap 'exit 0' TERM
dbus-daemon --config-file="$1/dbus.conf" --nofork --nopidfile &
DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/test-system-bus "$2" &
wait
"""


class Resolved:
    """A systemd-resolved in its own namespaces; run() runs a command beside it."""

    def __init__(self, proc: subprocess.Popen[bytes], stub: int, log: Path) -> None:
        self.proc, self.stub, self.log = proc, stub, log

    def _init_pid(self) -> int:
        return int(psutil.Process(self.proc.pid).children()[0].pid)

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        # Inside the PID namespace too: resolved refuses varlink peers it cannot see.
        enter = ["nsenter", f"--target={self._init_pid()}", "--mount", "--pid",
                 "env", "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/test-system-bus",
                 *(f"{k}={v}" for k, v in RESOLVED_ENV.items())]  # fmt: skip
        return subprocess.run([*enter, *argv], capture_output=True, text=True, timeout=30)

    async def ask(self, name: str, rdtype: str = "A", timeout: float = 3) -> list[str]:
        """Ask resolved's stub listener, as any DNS client would."""
        query = dns.message.make_query(name, rdtype)
        reply = await dns.asyncquery.udp(query, "127.0.0.1", port=self.stub, timeout=timeout)
        want = dns.rdatatype.from_text(rdtype)
        return sorted(rd.to_text() for rrset in reply.answer if rrset.rdtype == want
                      for rd in rrset)  # fmt: skip


def _resolve_user(tmp: Path) -> tuple[int, int]:
    """The systemd-resolve user's ids; where the package is not installed, a user made
    in copies of /etc/passwd and /etc/group that only the namespace sees."""
    try:
        user = pwd.getpwnam("systemd-resolve")
        return user.pw_uid, user.pw_gid
    except KeyError:
        pass
    taken = {u.pw_uid for u in pwd.getpwall()}
    uid = next(i for i in range(999, 100, -1) if i not in taken)
    passwd, group = Path("/etc/passwd").read_text(), Path("/etc/group").read_text()
    line = f"systemd-resolve:x:{uid}:{uid}:systemd Resolver:/:/usr/sbin/nologin\n"
    (tmp / "passwd").write_text(passwd.rstrip("\n") + "\n" + line)
    (tmp / "group").write_text(group.rstrip("\n") + f"\nsystemd-resolve:x:{uid}:\n")
    return uid, uid


@contextlib.asynccontextmanager
async def _resolved(
    tmp: Path, dns_port: int, nsswitch: str = "", main_conf: str = ""
) -> AsyncIterator[Resolved]:
    """systemd-resolved with the README's drop-in, pointed at jarvis-dns on dns_port (and
    main_conf, if given, as /etc/systemd/resolved.conf)."""
    path = re.search(r"`/etc/systemd/(resolved\.conf\.d/[^`]+)`", _section())
    assert path is not None
    drop_in = tmp / "etc-systemd" / path.group(1)
    drop_in.parent.mkdir(parents=True)
    if main_conf:
        (tmp / "etc-systemd" / "resolved.conf").write_text(main_conf)
    drop_in.write_text(_sub(_block("ini"), DOC_DNS, f"127.0.0.1:{dns_port}"))
    stub = free_port()
    (drop_in.parent / "zz-test.conf").write_text(TEST_DROP_IN.format(stub=stub))
    runtime = tmp / "run" / "systemd" / "resolve"
    runtime.mkdir(parents=True)
    uid, gid = _resolve_user(tmp)
    os.chown(runtime, uid, gid)  # as systemd's RuntimeDirectory= would
    (tmp / "dbus.conf").write_text(DBUS_CONF)
    if nsswitch:
        (tmp / "nsswitch.conf").write_text(nsswitch)
    log = tmp / "resolved.log"
    argv = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
            "--kill-child", "sh", "-c", NAMESPACE_SH, "sh", str(tmp), RESOLVED,
            str(tmp / "nsswitch.conf") if nsswitch else ""]  # fmt: skip
    with open(log, "wb") as out:
        env = {**os.environ, **RESOLVED_ENV}
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    resolved = Resolved(proc, stub, log)
    try:

        async def answers() -> bool:
            assert proc.poll() is None, f"systemd-resolved exited:\n{log.read_text()}"
            try:
                await resolved.ask("resolved.test", timeout=0.5)
            except (OSError, dns.exception.Timeout):
                return False
            return True

        await _eventually("systemd-resolved's stub to answer", answers)
        yield resolved
    finally:
        # unshare passes SIGTERM on to nobody; SIGKILL makes --kill-child kill PID 1 of
        # the namespace, and with it resolved and its D-Bus daemon.
        await asyncio.to_thread(_stop, proc, "kill")


@needs_resolved
async def test_the_systemd_resolved_snippet_routes_the_zone_to_jarvis_dns(
    tmp_path: Path,
) -> None:
    async with (
        running(example_registry()) as server,
        _resolved(tmp_path, server.addresses[0][1]) as resolved,
    ):
        assert await resolved.ask("auth.jarvis.internal") == ["10.0.0.11"]
        assert await resolved.ask("auth.jarvis.internal", "AAAA") == ["fd00::14"]
        srv = await resolved.ask("_auth._tcp.jarvis.internal", "SRV")
        assert srv == ["0 100 8443 1.auth.jarvis.internal.", "0 100 8443 4.auth.jarvis.internal.",
                       "10 1 8443 2.auth.jarvis.internal."]  # fmt: skip
        # The README's check.
        query = await asyncio.to_thread(resolved.run, RESOLVECTL, "query", "auth.jarvis.internal")
        assert query.returncode == 0, query.stderr
        assert re.findall(r"\b(10\.0\.0\.11|fd00::14)\b", query.stdout) in (
            ["10.0.0.11", "fd00::14"],
            ["fd00::14", "10.0.0.11"],
        ), query.stdout
        status = await asyncio.to_thread(resolved.run, RESOLVECTL, "status")
        assert re.search(rf"DNS Servers:? 127\.0\.0\.1:{server.addresses[0][1]}\n", status.stdout)
        assert re.search(r"DNS Domain:? ~jarvis\.internal\n", status.stdout), status.stdout


@needs_resolved
@pytest.mark.skipif(NSS_RESOLVE is None, reason="libnss-resolve is not installed")
async def test_getent_finds_registry_names_through_systemd_resolved(tmp_path: Path) -> None:
    # The README's other check, with an nsswitch.conf (in the namespace only) whose hosts
    # line asks resolved, as libnss-resolve's package sets it up.
    nsswitch = (
        "passwd: files\ngroup: files\nshadow: files\nhosts: files resolve [!UNAVAIL=return]\n"
    )
    async with (
        running(example_registry()) as server,
        _resolved(tmp_path, server.addresses[0][1], nsswitch=nsswitch) as resolved,
    ):
        v4 = await asyncio.to_thread(resolved.run, "getent", "ahostsv4", "auth.jarvis.internal")
        hosts = await asyncio.to_thread(resolved.run, "getent", "hosts", "1.auth.jarvis.internal")
    assert v4.returncode == 0, v4.stderr
    assert {line.split()[0] for line in v4.stdout.splitlines()} == {"10.0.0.11"}
    assert hosts.stdout.split() == ["10.0.0.11", "1.auth.jarvis.internal"]


def _links() -> list[str]:
    """Non-loopback links that are up: where DHCP or NetworkManager would put servers."""
    found = []
    for link in sorted(Path("/sys/class/net").iterdir()):
        try:
            flags = int((link / "flags").read_text(), 16)
            state = (link / "operstate").read_text().strip()
        except (OSError, ValueError):
            continue
        if flags & 0x1 and not flags & 0x8 and state in ("up", "unknown"):
            found.append(link.name)
    return found


def _give_a_link(resolved: Resolved, server: str, *domains: str) -> str:
    """Set a link's DNS server (and domains) in this private resolved only, as DHCP or
    NetworkManager would; skips when no link here gets a DNS scope."""
    for link in _links():
        for argv in (["dns", link, server], ["domain", link, *domains] if domains else []):
            if argv:
                done = resolved.run(RESOLVECTL, *argv)
                assert done.returncode == 0, done.stderr
        if "Current Scopes: DNS" in resolved.run(RESOLVECTL, "status", link).stdout:
            return link
        resolved.run(RESOLVECTL, "revert", link)
    pytest.skip("no link here that systemd-resolved gives a DNS scope")


@contextlib.contextmanager
def _other_server() -> Iterator[int]:
    """The host's "other" server: a dnsmasq on loopback that knows other.test and, like a
    public server, says NXDOMAIN for anything else, jarvis.internal included (no REFUSED,
    which would make resolved switch servers)."""
    port = free_port()
    proc = subprocess.Popen(
        [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
         "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}",
         "--pid-file=", "--address=/other.test/10.9.9.9", "--address=/#/"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        _stop(proc)


@needs_resolved
@pytest.mark.skipif(not Path(DNSMASQ).exists(), reason="dnsmasq is not installed")
async def test_other_names_keep_their_link_servers_under_systemd_resolved(
    tmp_path: Path,
) -> None:
    with _other_server() as other:
        async with (
            running(example_registry()) as server,
            _resolved(tmp_path, server.addresses[0][1]) as resolved,
        ):
            _give_a_link(resolved, f"127.0.0.1:{other}")

            async def routed() -> bool:
                return await resolved.ask("other.test") == ["10.9.9.9"]

            await _eventually("other.test through the link's server", routed)
            assert await resolved.ask("auth.jarvis.internal") == ["10.0.0.11"]
            assert await resolved.ask("2.auth.jarvis.internal") == ["10.0.0.12"]
            query = await asyncio.to_thread(resolved.run, RESOLVECTL, "query", "other.test")
            assert "10.9.9.9" in query.stdout, query.stderr


@needs_resolved
@pytest.mark.skipif(not Path(DNSMASQ).exists(), reason="dnsmasq is not installed")
async def test_a_global_dns_line_elsewhere_takes_the_zone_and_a_link_gives_it_back(
    tmp_path: Path,
) -> None:
    """The README's caveat: a DNS= in /etc/systemd/resolved.conf joins the drop-in's
    global list, and resolved asks that server first; jarvis-dns on a link works."""
    with _other_server() as other:
        async with (
            running(example_registry()) as server,
            _resolved(
                tmp_path, server.addresses[0][1], main_conf=f"[Resolve]\nDNS=127.0.0.1:{other}\n"
            ) as resolved,
        ):
            assert await resolved.ask("other.test") == ["10.9.9.9"]
            assert await resolved.ask("auth.jarvis.internal") == []  # the other's NXDOMAIN
            _give_a_link(resolved, f"127.0.0.1:{server.addresses[0][1]}", "~jarvis.internal")

            async def routed() -> bool:
                return await resolved.ask("1.auth.jarvis.internal") == ["10.0.0.11"]

            await _eventually("jarvis.internal through the link", routed)
            assert await resolved.ask("other.test") == ["10.9.9.9"]
