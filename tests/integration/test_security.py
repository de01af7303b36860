"""Kafka security settings: validation, secrets kept out of output, and SCRAM on a real broker.

The settings tests need no broker. The integration tests start one broker of
their own with a SASL_PLAINTEXT listener and one SCRAM user, and run
``yokoten`` commands against that listener as an operator would.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from service.config import ConfigError, Settings, load_settings
from service.correlator import create_app
from tests.integration.conftest import YOKOTEN, Stack, _load_broker_module, run

SCRAM_USER = "yokoten-svc"
# Random per run, so finding one of them in any output cannot be a coincidence.
SCRAM_PASSWORD = f"scram-{secrets.token_hex(12)}"
WRONG_PASSWORD = f"wrong-{secrets.token_hex(12)}"
KEY_PASSWORD = f"key-{secrets.token_hex(12)}"
IOC_DOMAIN = "evil.example.org"
IOC_KEY = f"domain-name:{IOC_DOMAIN}"
READY_TIMEOUT_S = 45.0


# ---------------------------------------------------------------------------
# Settings, without a broker
# ---------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove YOKOTEN_* variables of the calling shell, so each test sets exactly what it checks."""
    for name in list(os.environ):
        if name.startswith("YOKOTEN_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate (also used as the CA file), its key, and the key encrypted with KEY_PASSWORD."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not on PATH; it generates the test certificates")
    folder = tmp_path_factory.mktemp("tls")
    files = {"cert": folder / "client.pem", "key": folder / "client.key", "encrypted_key": folder / "encrypted.key"}
    env = {**os.environ, "KEY_PASSWORD": KEY_PASSWORD}
    commands = [
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(files["key"]), "-out", str(files["cert"]), "-subj", "/CN=yokoten-test", "-days", "1"],
        [openssl, "pkey", "-in", str(files["key"]), "-aes256", "-passout", "env:KEY_PASSWORD"]
        + ["-out", str(files["encrypted_key"])],
    ]
    for command in commands:
        subprocess.run(command, env=env, capture_output=True, check=True, timeout=60)
    return files


def _sasl(**overrides: Any) -> dict[str, Any]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username": SCRAM_USER,
        "sasl_password": SCRAM_PASSWORD,
        **overrides,
    }


def _config_error(**settings: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**settings)
    return str(caught.value)


def test_settings_repr_hides_passwords(clean_env: None, tls_files: dict[str, Path]) -> None:
    settings = load_settings(
        **_sasl(security_protocol="SASL_SSL"),
        ssl_cafile=tls_files["cert"],
        ssl_certfile=tls_files["cert"],
        ssl_keyfile=tls_files["encrypted_key"],
        ssl_password=KEY_PASSWORD,
    )
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert SCRAM_PASSWORD not in text
        assert KEY_PASSWORD not in text


def test_sasl_without_credentials_names_variables(clean_env: None) -> None:
    message = _config_error(security_protocol="SASL_PLAINTEXT")
    assert "YOKOTEN_SASL_MECHANISM" in message
    assert "YOKOTEN_SASL_USERNAME" in message
    assert "YOKOTEN_SASL_PASSWORD" in message


def test_sasl_without_password_names_only_it(clean_env: None) -> None:
    message = _config_error(**_sasl(sasl_password=None))
    assert "YOKOTEN_SASL_PASSWORD" in message
    assert "YOKOTEN_SASL_USERNAME" not in message


def test_unknown_sasl_mechanism_lists_valid_ones(clean_env: None) -> None:
    message = _config_error(**_sasl(sasl_mechanism="SCRAM-SHA-1"))
    assert "YOKOTEN_SASL_MECHANISM" in message
    assert "'SCRAM-SHA-1'" in message
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        assert mechanism in message


def test_unknown_security_protocol_rejected(clean_env: None) -> None:
    message = _config_error(security_protocol="TLS")
    assert "YOKOTEN_SECURITY_PROTOCOL" in message
    assert "SASL_SSL" in message


def test_mechanism_and_protocol_case_insensitive(clean_env: None) -> None:
    settings = load_settings(**_sasl(security_protocol="sasl_plaintext", sasl_mechanism="scram-sha-512"))
    assert settings.security_protocol == "SASL_PLAINTEXT"
    assert settings.sasl_mechanism == "SCRAM-SHA-512"


def test_sasl_settings_with_plaintext_rejected(clean_env: None) -> None:
    message = _config_error(**_sasl(security_protocol="PLAINTEXT"))
    assert "YOKOTEN_SASL_USERNAME" in message
    assert "does not use SASL" in message


@pytest.mark.parametrize("name", ["ssl_cafile", "ssl_certfile", "ssl_keyfile"])
def test_missing_ssl_file_names_variable_and_path(
    clean_env: None, tls_files: dict[str, Path], tmp_path: Path, name: str
) -> None:
    missing = tmp_path / "absent.pem"
    settings: dict[str, Any] = {"security_protocol": "SSL", "ssl_certfile": tls_files["cert"], name: missing}
    message = _config_error(**settings)
    assert f"YOKOTEN_{name.upper()}: file not found: {missing}" in message


def test_ssl_files_with_plaintext_rejected(clean_env: None, tls_files: dict[str, Path]) -> None:
    message = _config_error(ssl_cafile=tls_files["cert"])
    assert "YOKOTEN_SSL_CAFILE" in message
    assert "does not use TLS" in message


def test_password_file_read_at_start(clean_env: None, tmp_path: Path) -> None:
    secret_file = tmp_path / "sasl-password"
    secret_file.write_text(SCRAM_PASSWORD + "\n")
    settings = load_settings(**_sasl(sasl_password=None, sasl_password_file=secret_file))
    assert settings.kafka_options()["sasl_plain_password"] == SCRAM_PASSWORD
    assert SCRAM_PASSWORD not in repr(settings)


def test_unreadable_password_file_names_variable(clean_env: None, tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    message = _config_error(**_sasl(sasl_password=None, sasl_password_file=missing))
    assert f"YOKOTEN_SASL_PASSWORD_FILE: cannot read {missing}" in message


def test_empty_password_file_rejected(clean_env: None, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    message = _config_error(**_sasl(sasl_password=None, sasl_password_file=empty))
    assert f"YOKOTEN_SASL_PASSWORD_FILE: {empty} is empty" in message


def test_password_and_password_file_rejected(clean_env: None, tmp_path: Path) -> None:
    secret_file = tmp_path / "sasl-password"
    secret_file.write_text(SCRAM_PASSWORD)
    message = _config_error(**_sasl(sasl_password_file=secret_file))
    assert "YOKOTEN_SASL_PASSWORD and YOKOTEN_SASL_PASSWORD_FILE are both set" in message


def test_config_errors_never_contain_password(clean_env: None, tmp_path: Path, tls_files: dict[str, Path]) -> None:
    secret_file = tmp_path / "sasl-password"
    secret_file.write_text(SCRAM_PASSWORD)
    invalid_settings = [
        _sasl(sasl_mechanism="GSSAPI"),
        _sasl(sasl_username=None),
        _sasl(security_protocol="PLAINTEXT"),
        _sasl(sasl_password_file=secret_file),
        _sasl(partitions=0),
        _sasl(security_protocol="SASL_SSL", ssl_certfile=tls_files["cert"], ssl_keyfile=tmp_path / "absent.key"),
    ]
    for settings in invalid_settings:
        assert SCRAM_PASSWORD not in _config_error(**settings)


def test_kafka_options_sasl_plaintext(clean_env: None) -> None:
    options = load_settings(**_sasl()).kafka_options()
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == SCRAM_USER
    assert options["sasl_plain_password"] == SCRAM_PASSWORD
    assert "ssl_context" not in options


def test_kafka_options_plaintext_has_no_secrets(clean_env: None) -> None:
    options = load_settings().kafka_options()
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


def test_kafka_options_ssl_context(clean_env: None, tls_files: dict[str, Path]) -> None:
    settings = load_settings(
        security_protocol="SSL",
        ssl_cafile=tls_files["cert"],
        ssl_certfile=tls_files["cert"],
        ssl_keyfile=tls_files["encrypted_key"],
        ssl_password=KEY_PASSWORD,
    )
    context = settings.kafka_options()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in settings.kafka_options()


def test_ssl_check_hostname_false(clean_env: None, tls_files: dict[str, Path]) -> None:
    settings = load_settings(security_protocol="SSL", ssl_cafile=tls_files["cert"], ssl_check_hostname=False)
    context = settings.kafka_options()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_ssl_password_file_decrypts_key(clean_env: None, tls_files: dict[str, Path], tmp_path: Path) -> None:
    secret_file = tmp_path / "key-password"
    secret_file.write_text(KEY_PASSWORD + "\n")
    settings = load_settings(
        security_protocol="SSL",
        ssl_certfile=tls_files["cert"],
        ssl_keyfile=tls_files["encrypted_key"],
        ssl_password_file=secret_file,
    )
    assert isinstance(settings.kafka_options()["ssl_context"], ssl.SSLContext)


def test_encrypted_key_wrong_password_names_setting(clean_env: None, tls_files: dict[str, Path]) -> None:
    # Without a usable password OpenSSL must fail, not prompt on the terminal.
    for password in (None, WRONG_PASSWORD):
        message = _config_error(
            security_protocol="SSL",
            ssl_certfile=tls_files["cert"],
            ssl_keyfile=tls_files["encrypted_key"],
            ssl_password=password,
        )
        assert "YOKOTEN_SSL_PASSWORD" in message
        assert str(tls_files["encrypted_key"]) in message
        assert WRONG_PASSWORD not in message


def _correlator_auth(settings: Settings) -> dict[str, Any]:
    app = create_app(settings)
    return credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)


def test_correlator_app_gets_sasl_credentials(clean_env: None) -> None:
    auth = _correlator_auth(load_settings(**_sasl(correlator_id=f"security-{secrets.token_hex(4)}")))
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert auth["sasl_plain_username"] == SCRAM_USER
    assert auth["sasl_plain_password"] == SCRAM_PASSWORD
    assert auth["ssl_context"] is None


def test_correlator_app_gets_sasl_ssl_credentials(clean_env: None, tls_files: dict[str, Path]) -> None:
    settings = load_settings(
        **_sasl(security_protocol="SASL_SSL", correlator_id=f"security-{secrets.token_hex(4)}"),
        ssl_cafile=tls_files["cert"],
    )
    auth = _correlator_auth(settings)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["ssl_context"] is settings.kafka_options()["ssl_context"]


def test_correlator_app_gets_ssl_context(clean_env: None, tls_files: dict[str, Path]) -> None:
    settings = load_settings(
        security_protocol="SSL", ssl_cafile=tls_files["cert"], correlator_id=f"security-{secrets.token_hex(4)}"
    )
    auth = _correlator_auth(settings)
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"] is settings.kafka_options()["ssl_context"]


def test_correlator_app_plaintext_has_no_credentials(clean_env: None) -> None:
    app = create_app(load_settings(correlator_id=f"security-{secrets.token_hex(4)}"))
    assert app.conf.broker_credentials is None


def test_settings_never_log_passwords(
    clean_env: None, tls_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = load_settings(
        **_sasl(security_protocol="SASL_SSL", correlator_id=f"security-{secrets.token_hex(4)}"),
        ssl_cafile=tls_files["cert"],
        ssl_certfile=tls_files["cert"],
        ssl_keyfile=tls_files["encrypted_key"],
        ssl_password=KEY_PASSWORD,
        ssl_check_hostname=False,
    )
    settings.kafka_options()
    create_app(settings)
    assert "YOKOTEN_SSL_CHECK_HOSTNAME is false" in caplog.text
    assert SCRAM_PASSWORD not in caplog.text
    assert KEY_PASSWORD not in caplog.text


# ---------------------------------------------------------------------------
# SCRAM against a real broker
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[Any]:
    """A broker for this module, with a SASL_PLAINTEXT listener where SCRAM_USER can log in."""
    broker = _load_broker_module().KafkaBroker(scram_users={SCRAM_USER: SCRAM_PASSWORD})
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _security_env(password: str) -> dict[str, str]:
    return {
        "YOKOTEN_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "YOKOTEN_SASL_MECHANISM": "SCRAM-SHA-256",
        "YOKOTEN_SASL_USERNAME": SCRAM_USER,
        "YOKOTEN_SASL_PASSWORD": password,
    }


@pytest.fixture
def sasl_stack(sasl_broker: Any, tmp_path: Path) -> Iterator[Stack]:
    """Per-test topic names and SCRAM credentials for the SASL listener; no topics or workers yet."""
    stack = Stack(sasl_broker.sasl_bootstrap, tmp_path)
    stack.env.update(_security_env(SCRAM_PASSWORD))
    stack.settings = load_settings(**{key.removeprefix("YOKOTEN_").lower(): value for key, value in stack.env.items()})
    try:
        yield stack
    finally:
        stack.stop_all()


def _full_logs(stack: Stack) -> str:
    return "\n".join(path.read_text(errors="replace") for _, path in stack.processes)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(stack: Stack, process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the worker exited with {process.returncode}:\n{stack.logs()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"/readyz on port {port} was not 200 within {READY_TIMEOUT_S:.0f} s:\n{stack.logs()}")


def _proxy_event(host: str) -> bytes:
    return orjson.dumps(
        {
            "@timestamp": "2026-01-01T00:00:00Z",
            "event": {"category": ["web"]},
            "host": {"name": host},
            "url": {"full": f"https://{IOC_DOMAIN}/download"},
        }
    )


async def _list_topics(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(**settings.kafka_options())  # type: ignore[arg-type]
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def _produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(acks="all", **settings.kafka_options())  # type: ignore[arg-type]
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value=value)
    finally:
        await producer.stop()


async def _consume(settings: Settings, topic: str, until: Callable[[list[Any]], bool], timeout: float) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **settings.kafka_options(),  # type: ignore[arg-type]
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(records):
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def _push_ioc(stack: Stack, tmp_path: Path) -> None:
    feed = tmp_path / "iocs.txt"
    feed.write_text(IOC_DOMAIN.replace(".", "[.]") + "\n")
    stack.yokoten("ioc", "push", str(feed))


@pytest.mark.integration
def test_topics_create_over_scram(sasl_stack: Stack) -> None:
    result = sasl_stack.yokoten("topics", "create")
    topics = run(_list_topics(sasl_stack.settings))
    for source in ("mail", "proxy", "edr", "iocs", "sightings", "alerts", "dead-letter"):
        assert sasl_stack.topic(source) in topics
    assert SCRAM_PASSWORD not in (result.stdout + result.stderr).decode(errors="replace")


@pytest.mark.integration
def test_matcher_matches_over_scram(sasl_stack: Stack, tmp_path: Path) -> None:
    sasl_stack.yokoten("topics", "create")
    _push_ioc(sasl_stack, tmp_path)
    port = _free_port()
    # DEBUG logs include aiokafka's connection and SASL handshake lines, so the
    # password check below covers them too.
    matcher = sasl_stack.start("matcher", {"YOKOTEN_METRICS_PORT": str(port), "YOKOTEN_LOG_LEVEL": "DEBUG"})
    _wait_ready(sasl_stack, matcher, port)

    run(_produce(sasl_stack.settings, sasl_stack.topic("proxy"), [_proxy_event("ws1.example.com")]))
    records = run(_consume(sasl_stack.settings, sasl_stack.topic("sightings"), lambda found: bool(found), 30))

    assert len(records) == 1, sasl_stack.logs()
    sighting = orjson.loads(records[0].value)
    assert sighting["ioc"]["key"] == IOC_KEY
    assert sighting["hosts"] == ["ws1.example.com"]
    assert SCRAM_PASSWORD not in _full_logs(sasl_stack)


@pytest.fixture(scope="module")
def wrong_password_result(sasl_broker: Any) -> subprocess.CompletedProcess[str]:
    """``yokoten topics create`` run against the SASL listener with WRONG_PASSWORD."""
    env = {**os.environ, "YOKOTEN_BOOTSTRAP_SERVERS": sasl_broker.sasl_bootstrap, **_security_env(WRONG_PASSWORD)}
    return subprocess.run(
        [YOKOTEN, "topics", "create"], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.integration
def test_wrong_password_fails_without_leaking(wrong_password_result: subprocess.CompletedProcess[str]) -> None:
    output = wrong_password_result.stdout + wrong_password_result.stderr
    assert wrong_password_result.returncode != 0
    assert WRONG_PASSWORD not in output
    assert SCRAM_PASSWORD not in output
    # aiokafka logs the broker's SASL error before it gives up on the bootstrap server.
    assert "SaslAuthenticationFailed" in output, output


@pytest.mark.integration
def test_wrong_password_error_names_setting(wrong_password_result: subprocess.CompletedProcess[str]) -> None:
    last_line = wrong_password_result.stderr.strip().splitlines()[-1]
    assert "authentication" in last_line.lower(), last_line
    assert "YOKOTEN_SASL_PASSWORD" in last_line, last_line


@pytest.mark.integration
def test_correlator_alerts_over_scram(sasl_stack: Stack, tmp_path: Path) -> None:
    sasl_stack.yokoten("topics", "create")
    _push_ioc(sasl_stack, tmp_path)
    port = _free_port()
    correlator = sasl_stack.start("correlator", {"YOKOTEN_METRICS_PORT": str(port)})
    sasl_stack.start("matcher")
    _wait_ready(sasl_stack, correlator, port)

    events = [_proxy_event("ws1.example.com"), _proxy_event("ws2.example.com")]
    run(_produce(sasl_stack.settings, sasl_stack.topic("proxy"), events))
    records = run(_consume(sasl_stack.settings, sasl_stack.topic("alerts"), lambda found: bool(found), 40))

    assert records, sasl_stack.logs()
    alert = orjson.loads(records[-1].value)
    assert alert["yokoten"]["ioc_key"] == IOC_KEY
    assert sorted(alert["related"]["hosts"]) == ["ws1.example.com", "ws2.example.com"]
    assert SCRAM_PASSWORD not in _full_logs(sasl_stack)
