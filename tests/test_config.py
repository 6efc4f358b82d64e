"""One settings table (config.SETTINGS) makes Config's defaults, the `serve` flags, the
JARVIS_DNS_* variables, `--print-config` and docs/operations.md's table: these tests fail when any
of them disagrees with it."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_serve import Server

from jarvis_dns.cli import build_parser, config_from_args, main
from jarvis_dns.config import SETTINGS, Config, Setting, check_fields, markdown_table
from jarvis_dns.errors import ConfigError

DOCS = Path(__file__).parent.parent / "docs" / "operations.md"
# A value unlike the default for each kind, as a flag and an environment variable give it.
SAMPLES: dict[type, tuple[str, object]] = {
    int: ("7", 7),
    float: ("2.5", 2.5),
    str: ("x", "x"),
    list: ("a,b", ["a", "b"]),
}


def serve_flags() -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    return {a.option_strings[0]: a for a in serve._actions if a.option_strings}


def sample(s: Setting) -> tuple[str, object]:
    if s.choices:
        return s.choices[-1], s.choices[-1]
    return SAMPLES[s.kind]


def test_config_has_exactly_the_tables_settings_with_its_defaults() -> None:
    check_fields()
    config = Config()
    for s in SETTINGS:
        expected = list(s.default) if isinstance(s.default, tuple) else s.default
        assert getattr(config, s.name) == expected, s.name
    assert Config().dns is not Config().dns  # lists are not shared between configs


def test_every_setting_is_a_serve_flag_and_every_flag_a_setting() -> None:
    flags = serve_flags()
    assert set(flags) - {"-h", "--print-config"} == {s.option for s in SETTINGS}
    for s in SETTINGS:
        assert flags[s.option].dest == s.name
        assert s.default_text() in (flags[s.option].help or ""), s.option


@pytest.mark.parametrize("s", SETTINGS, ids=lambda s: s.option)
def test_each_setting_comes_from_its_flag_else_its_variable_else_its_default(
    s: Setting,
) -> None:
    name = s.name
    parse = build_parser().parse_args
    if s.kind is bool:
        turned = not s.default
        by_flag, _ = config_from_args(parse(["serve", s.option]), {})
        by_env, sources = config_from_args(parse(["serve"]), {s.env: "1"})
        assert getattr(by_flag, name) == turned and getattr(by_env, name) == turned
        off, _ = config_from_args(parse(["serve"]), {s.env: "no"})
        assert getattr(off, name) == s.default
    else:
        raw, value = sample(s)
        by_flag, _ = config_from_args(parse(["serve", s.option, raw]), {})
        by_env, sources = config_from_args(parse(["serve"]), {s.env: raw})
        assert getattr(by_flag, name) == value and getattr(by_env, name) == value
        other = "9" if s.kind in (int, float) else "y"
        if not s.choices:
            both, _ = config_from_args(parse(["serve", s.option, raw]), {s.env: other})
            assert getattr(both, name) == value  # the flag wins
    assert sources[name] == f"env {s.env}"
    default, sources = config_from_args(parse(["serve"]), {})
    assert getattr(default, name) == getattr(Config(), name) and sources[name] == "default"


def test_a_bad_variable_is_refused_by_name() -> None:
    args = build_parser().parse_args(["serve"])
    for env, raw in [("JARVIS_DNS_DNS_TTL", "soon"), ("JARVIS_DNS_ACL", "perhaps"),
                     ("JARVIS_DNS_LOG_LEVEL", "loud")]:  # fmt: skip
        with pytest.raises(ConfigError, match=env):
            config_from_args(args, {env: raw})


def test_repeated_and_comma_separated_list_flags_add_up() -> None:
    args = build_parser().parse_args(["serve", "--dns", "127.0.0.1:1,127.0.0.1:2", "--dns",
                                      "[::1]:3"])  # fmt: skip
    config, sources = config_from_args(args, {})
    assert config.dns == ["127.0.0.1:1", "127.0.0.1:2", "[::1]:3"] and sources["dns"] == "flag"


def test_print_config_shows_each_effective_value_and_its_source(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JARVIS_DNS_DNS_TTL", "7")
    monkeypatch.setenv("JARVIS_DNS_ACL_BOOTSTRAP_TOKEN", "s3cret")
    assert main(["serve", "--print-config", "--max-body-bytes", "1000", "--no-active-checks"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert set(lines) == {s.option for s in SETTINGS}
    assert lines["--max-body-bytes"] == ["1000", "flag"]
    assert lines["--no-active-checks"] == ["on", "flag"]
    assert lines["--dns-ttl"] == ["7", "env", "JARVIS_DNS_DNS_TTL"]
    assert lines["--acl-bootstrap-token"] == ["***", "env", "JARVIS_DNS_ACL_BOOTSTRAP_TOKEN"]
    assert "s3cret" not in out
    assert lines["--liveness-flush"] == ["1.0", "default"]


def test_the_docs_table_is_the_settings_table() -> None:
    text = DOCS.read_text()
    listed = text.split("<!-- settings:table -->\n")[1].split("\n<!-- /settings:table -->")[0]
    assert listed == markdown_table()


@pytest.fixture
def small_bodies(tmp_path: Path) -> Iterator[Server]:
    """A server with --max-body-bytes and --liveness-flush, which had no flag before."""

    server = Server(tmp_path, "--max-body-bytes", "200", "--liveness-flush", "0.2")
    server.wait_ready()
    yield server
    server.kill()


def test_max_body_bytes_from_its_flag_refuses_a_larger_body(small_bodies: Server) -> None:
    url = small_bodies.url
    body = {"service_type": "api", "instance_id": 1, "host": "10.0.0.1", "port": 80}
    assert httpx.post(url + "/v1/instances", json=body).status_code == 201
    large = {**body, "metadata": {"pad": "x" * 300}}
    answer = httpx.post(url + "/v1/instances", json=large)
    assert answer.status_code == 413 and answer.json()["error"]["field"] == "body"


def test_dataclass_fields_and_settings_keep_one_order() -> None:
    assert [f.name for f in dataclasses.fields(Config)] == [s.name for s in SETTINGS]
