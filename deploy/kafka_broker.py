"""Run a single-node Apache Kafka broker on 127.0.0.1 for tests and local runs.

The broker runs in KRaft mode as a combined broker and controller, from jars
that Maven fetches once from Maven Central with deploy/kafka/pom.xml into a
cache folder. Only the Python standard library is used, so the module can be
loaded with importlib from its path before the project's dependencies exist.

Library use::

    with KafkaBroker() as broker:
        connect_to(broker.bootstrap)   # "127.0.0.1:<port>"

    # A second listener with SASL_PLAINTEXT and SCRAM-SHA-256/512 users.
    with KafkaBroker(scram_users={"alice": "alice-secret"}) as broker:
        connect_to(broker.sasl_bootstrap, "SCRAM-SHA-256", "alice", "alice-secret")

Command line::

    python deploy/kafka_broker.py fetch
    python deploy/kafka_broker.py run [--port 9092] [--data-dir DIR]
    python deploy/kafka_broker.py run --scram-users-file users.txt [--sasl-port 9094]

Needs a JDK 17 or newer (``java``) and Apache Maven (``mvn``) on PATH.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

LOG = logging.getLogger("kafka_broker")

KAFKA_VERSION = "4.1.1"
MIN_JAVA_MAJOR = 17  # Kafka 4.x brokers need Java 17 or newer.

DEPLOY_DIR = Path(__file__).resolve().parent
POM_PATH = DEPLOY_DIR / "kafka" / "pom.xml"
LOG4J2_CONFIG_PATH = DEPLOY_DIR / "kafka" / "log4j2.properties"

CACHE_ENV_VAR = "YOKOTEN_KAFKA_CACHE"
COMPLETE_MARKER = ".complete"
SCRATCH_PREFIX = "libs.partial-"

# A test broker needs little heap. -XX:TieredStopAtLevel=1 compiles with C1
# only, which cut the broker's start from about 3.9 s to about 3.0 s (format
# included, 3 runs each, OpenJDK 17 on a 2-core machine). Peak throughput is
# lower than with C2, which tests of this project do not reach.
BROKER_JVM_OPTIONS = [
    "-Xms256m",
    "-Xmx512m",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
]
TOOL_JVM_OPTIONS = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]

BROKER_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_MAIN_CLASS = "kafka.tools.StorageTool"  # In kafka_2.13 4.1.1.

NODE_ID = 1
LOOPBACK_HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
PROBE_INTERVAL_S = 0.25
LOG_TAIL_LINES = 40
KRAFT_LOG_DIR_NAME = "kraft-logs"  # log.dirs inside the data dir.

# Kafka protocol API keys and the request versions this module sends.
API_VERSIONS_KEY = 18
API_VERSIONS_VERSION = 0
METADATA_KEY = 3
# v4 is the first Metadata version with allow_auto_topic_creation and still
# uses the fixed-width encoding. Kafka 4.1.1 accepts Metadata v0-v13.
METADATA_VERSION = 4
CLIENT_ID = "yokoten-kafka-broker-probe"

# The optional SASL listener. Its security protocol is also its listener name.
SASL_LISTENER = "SASL_PLAINTEXT"
# SCRAM mechanism names as Kafka spells them, with the hashlib hash of each.
SCRAM_MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# Kafka 4.1.1 rejects fewer than 4096 iterations for both mechanisms.
SCRAM_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


class KafkaBrokerError(RuntimeError):
    """Raised when the jars cannot be fetched or the broker fails to start."""


# ---------------------------------------------------------------------------
# Jars
# ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """Return the folder for this Kafka version's jars.

    YOKOTEN_KAFKA_CACHE replaces the base folder ``~/.cache/yokoten``. The
    version stays in the path so jars of two versions never mix.
    """
    base = os.environ.get(CACHE_ENV_VAR)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "yokoten"
    return root / f"kafka-{KAFKA_VERSION}"


def require_tool(name: str, install_hint: str) -> str:
    """Return the path of program `name`, or raise naming what to install."""
    path = shutil.which(name)
    if path is None:
        raise KafkaBrokerError(f"{name!r} was not found on PATH. {install_hint}")
    return path


def require_java() -> str:
    """Return the path of ``java`` after checking it is Java 17 or newer."""
    java = require_tool(
        "java",
        "Install a JDK 17 or newer, for example: apt-get install openjdk-17-jdk-headless",
    )
    major = java_major_version(java)
    if major < MIN_JAVA_MAJOR:
        raise KafkaBrokerError(
            f"{java} is Java {major}, but Kafka {KAFKA_VERSION} needs Java "
            f"{MIN_JAVA_MAJOR} or newer. Install a newer JDK or put it first on PATH."
        )
    return java


@functools.cache
def java_major_version(java: str) -> int:
    """Run ``java -version`` and return the major version (8 for "1.8.0")."""
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    output = result.stderr + result.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if match is None:
        raise KafkaBrokerError(
            f"Could not read the Java version from '{java} -version', which printed: {output.strip()!r}"
        )
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        major = int(match.group(2))
    return major


def ensure_jars() -> Path:
    """Fetch the Kafka jars once and return the folder that contains them.

    Maven copies into a scratch folder that is renamed to ``libs`` only after
    the copy finished and the marker file was written, so an interrupted
    fetch is redone on the next call. A file lock makes parallel test
    processes wait for one fetch instead of running several.
    """
    libs = cache_dir() / "libs"
    if (libs / COMPLETE_MARKER).is_file():
        return libs

    mvn = require_tool("mvn", "Install Apache Maven, for example: apt-get install maven")
    require_java()
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / "fetch.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if (libs / COMPLETE_MARKER).is_file():
            return libs
        # Only the lock holder writes here, so these are left by killed fetches.
        for leftover in [libs, *libs.parent.glob(f"{SCRATCH_PREFIX}*")]:
            if leftover.exists():
                LOG.info("Removing incomplete jar folder %s", leftover)
                shutil.rmtree(leftover)
        fetch_into(mvn, libs)
    return libs


def fetch_into(mvn: str, libs: Path) -> None:
    """Fetch the jars into a scratch folder and rename it to `libs` when complete."""
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=libs.parent))
    try:
        run_maven_copy(mvn, scratch)
        (scratch / COMPLETE_MARKER).write_text(f"kafka {KAFKA_VERSION}\n")
        scratch.rename(libs)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)


def run_maven_copy(mvn: str, output_dir: Path) -> None:
    """Copy kafka_2.13 and its runtime dependencies into `output_dir`."""
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(POM_PATH),
        f"-Dkafka.version={KAFKA_VERSION}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
        "-DincludeScope=runtime",
    ]
    LOG.info("Fetching Kafka %s jars with Maven into %s", KAFKA_VERSION, output_dir)
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise KafkaBrokerError(
            f"Maven failed with exit code {result.returncode} while fetching "
            f"Kafka {KAFKA_VERSION} jars with {POM_PATH}. Check that Maven "
            f"Central is reachable. Maven output:\n{output}"
        )
    jar_count = len(list(output_dir.glob("*.jar")))
    LOG.info("Fetched %s jars in %.1f s", jar_count, time.monotonic() - started)


# ---------------------------------------------------------------------------
# Kafka protocol probe
# ---------------------------------------------------------------------------


def encode_request(api_key: int, api_version: int, correlation_id: int, body: bytes) -> bytes:
    """Frame a request with a v1 request header (used by non-flexible versions)."""
    client_id = CLIENT_ID.encode()
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def receive_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly `size` bytes, raising ConnectionError if the peer closes."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def send_request(sock: socket.socket, api_key: int, api_version: int, correlation_id: int, body: bytes) -> bytes:
    """Send one request and return the response body after its v0 header."""
    sock.sendall(encode_request(api_key, api_version, correlation_id, body))
    (size,) = struct.unpack(">i", receive_exact(sock, 4))
    response = receive_exact(sock, size)
    (received_id,) = struct.unpack_from(">i", response, 0)
    if received_id != correlation_id:
        raise ConnectionError(f"response correlation id {received_id} does not match request {correlation_id}")
    return response[4:]


class Reader:
    """Cursor over a big-endian Kafka response body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def read(self, fmt: str) -> int:
        """Read one integer in `fmt`, a struct format such as ">h" or ">i"."""
        (value,) = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return int(value)

    def read_string(self) -> str | None:
        """Read an int16-length string, where length -1 means null."""
        length = self.read(">h")
        if length < 0:
            return None
        text = self.data[self.offset : self.offset + length].decode()
        self.offset += length
        return text


def parse_api_versions(body: bytes) -> dict[int, tuple[int, int]]:
    """Parse an ApiVersions v0 response into {api_key: (min, max)}."""
    reader = Reader(body)
    error_code = reader.read(">h")
    if error_code != 0:
        raise ConnectionError(f"ApiVersions returned error code {error_code}")
    versions = {}
    for _ in range(reader.read(">i")):
        api_key = reader.read(">h")
        versions[api_key] = (reader.read(">h"), reader.read(">h"))
    return versions


def parse_metadata_brokers(body: bytes) -> list[tuple[int, str, int]]:
    """Parse the broker list of a Metadata v4 response as (node id, host, port)."""
    reader = Reader(body)
    reader.read(">i")  # throttle_time_ms
    brokers = []
    for _ in range(reader.read(">i")):
        node_id = reader.read(">i")
        host = reader.read_string() or ""
        port = reader.read(">i")
        reader.read_string()  # rack
        brokers.append((node_id, host, port))
    return brokers


def probe_broker(port: int, timeout_s: float = 2.0) -> list[tuple[int, str, int]]:
    """Return the brokers listed by the Kafka server on 127.0.0.1:`port`.

    Sends ApiVersions v0 to check that the server speaks the protocol and
    accepts Metadata v4, then a Metadata v4 request for no topics. A broker
    that lists itself has registered with the controller and serves clients.
    Raises OSError or ConnectionError while the server is not ready.
    """
    with socket.create_connection((LOOPBACK_HOST, port), timeout=timeout_s) as sock:
        api_versions = parse_api_versions(send_request(sock, API_VERSIONS_KEY, API_VERSIONS_VERSION, 1, b""))
        min_version, max_version = api_versions.get(METADATA_KEY, (-1, -1))
        if not min_version <= METADATA_VERSION <= max_version:
            raise KafkaBrokerError(
                f"The broker on port {port} supports Metadata versions "
                f"{min_version}-{max_version}, but this probe sends version "
                f"{METADATA_VERSION}. Update probe_broker for this Kafka version."
            )
        # An empty topic array (not null) requests brokers only, and the
        # trailing byte sets allow_auto_topic_creation to false.
        metadata_body = struct.pack(">ib", 0, 0)
        return parse_metadata_brokers(send_request(sock, METADATA_KEY, METADATA_VERSION, 2, metadata_body))


def probe_api_versions(port: int, timeout_s: float = 2.0) -> dict[int, tuple[int, int]]:
    """Return the API versions of the Kafka server on 127.0.0.1:`port`.

    A SASL listener responds to ApiVersions before the client authenticates,
    so this also checks a listener that rejects this probe's Metadata request.
    """
    with socket.create_connection((LOOPBACK_HOST, port), timeout=timeout_s) as sock:
        return parse_api_versions(send_request(sock, API_VERSIONS_KEY, API_VERSIONS_VERSION, 1, b""))


# ---------------------------------------------------------------------------
# SCRAM users
# ---------------------------------------------------------------------------


def check_scram_users(users: dict[str, str]) -> None:
    """Raise ValueError for a user name that StorageTool's --add-scram cannot carry.

    StorageTool splits the option value on commas and strips one pair of
    double quotes around a value, so names contain neither.
    """
    for name, password in users.items():
        if not isinstance(name, str) or not isinstance(password, str):
            raise ValueError(f"SCRAM user names and passwords must be strings, got {type(name).__name__} for {name!r}")
        if not name or "," in name or '"' in name or name != name.strip():
            raise ValueError(
                f"SCRAM user name {name!r} is invalid: use a non-empty name without commas, "
                "double quotes or surrounding spaces"
            )


def scram_credential_argument(mechanism: str, name: str, password: str) -> str:
    """Return one StorageTool --add-scram value for `name`, with a salted password.

    The salted password is PBKDF2-HMAC over the UTF-8 password, as SCRAM
    (RFC 5802) and Kafka's ScramFormatter compute it. Passing it in place of
    password=... keeps the plain password out of the process list and lets
    it contain commas. The salted password still authenticates as `name` to
    this broker, so the broker stays on loopback.
    """
    salt = os.urandom(SCRAM_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac(SCRAM_MECHANISMS[mechanism], password.encode("utf-8"), salt, SCRAM_ITERATIONS)
    return (
        f"{mechanism}=[name={name},iterations={SCRAM_ITERATIONS},"
        f"salt={base64.b64encode(salt).decode()},saltedpassword={base64.b64encode(salted).decode()}]"
    )


def scram_arguments(users: dict[str, str]) -> list[str]:
    """Return StorageTool options that create every user for every SCRAM mechanism."""
    arguments = []
    for name, password in sorted(users.items()):
        for mechanism in SCRAM_MECHANISMS:
            arguments += ["--add-scram", scram_credential_argument(mechanism, name, password)]
    return arguments


def read_scram_users_file(path: Path) -> dict[str, str]:
    """Read ``name=password`` lines; blank lines and lines starting with "#" are skipped."""
    users = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, separator, password = line.partition("=")
        if not separator:
            raise ValueError(f"{path}:{number}: expected name=password, found no '='")
        users[name.strip()] = password
    return users


# ---------------------------------------------------------------------------
# Broker
# ---------------------------------------------------------------------------


def pick_free_ports(count: int) -> list[int]:
    """Return `count` distinct ports that were free on 127.0.0.1 just now.

    NOTE: another process can take a port between this check and the broker's
    bind. The broker then exits with a bind error, reported with its log tail.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK_HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def new_cluster_id() -> str:
    """Return a random cluster id in Kafka's Uuid text form (22 base64url chars).

    Ids starting with "-" are skipped because command-line parsers read them
    as options, which is also why Kafka's Uuid.randomUuid() skips them.
    """
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def escape_property(value: str) -> str:
    """Escape a value for a Java .properties file, where "\\" starts an escape."""
    return value.replace("\\", "\\\\")


def broker_properties(port: int, controller_port: int, log_dirs: Path, sasl_port: int | None = None) -> dict[str, str]:
    """Return server.properties settings for a one-node test cluster.

    With `sasl_port`, clients can also connect to a SASL_PLAINTEXT listener
    that accepts SCRAM-SHA-256 and SCRAM-SHA-512. The broker and the
    controller talk to each other over PLAINTEXT in both cases.
    """
    listeners = [f"PLAINTEXT://{LOOPBACK_HOST}:{port}", f"CONTROLLER://{LOOPBACK_HOST}:{controller_port}"]
    advertised = [f"PLAINTEXT://{LOOPBACK_HOST}:{port}"]
    protocol_map = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    sasl_settings = {}
    if sasl_port is not None:
        listeners.append(f"{SASL_LISTENER}://{LOOPBACK_HOST}:{sasl_port}")
        advertised.append(f"{SASL_LISTENER}://{LOOPBACK_HOST}:{sasl_port}")
        protocol_map.append(f"{SASL_LISTENER}:{SASL_LISTENER}")
        prefix = f"listener.name.{SASL_LISTENER.lower()}"
        sasl_settings[f"{prefix}.sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
        # The server side of SCRAM needs a JAAS login module per mechanism. It
        # has no credentials because the users are stored in the cluster metadata.
        for mechanism in SCRAM_MECHANISMS:
            sasl_settings[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = SCRAM_LOGIN_MODULE
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        # A static voter set needs no --standalone at format time.
        "controller.quorum.voters": f"{NODE_ID}@{LOOPBACK_HOST}:{controller_port}",
        "listeners": ",".join(listeners),
        "advertised.listeners": ",".join(advertised),
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": ",".join(protocol_map),
        **sasl_settings,
        "log.dirs": escape_property(str(log_dirs)),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        # One replica for every internal topic, because there is one broker.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fewer internal partitions make the first group join and the first
        # transaction faster. The defaults are 50 for both.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
    }


def write_properties(path: Path, settings: dict[str, str]) -> None:
    lines = [f"{key}={value}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last `lines` lines of a log file, without Java stack frames.

    Frames ("at ..." and "... N more") are dropped so that the messages and
    their "Caused by:" lines fit in the tail.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    message_lines = [line for line in text.splitlines() if not is_stack_frame(line)]
    return "\n".join(message_lines[-lines:]) or f"({path} is empty)"


def is_stack_frame(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("at ") or re.fullmatch(r"\.\.\. \d+ more", stripped) is not None


class KafkaBroker:
    """Single-node KRaft Kafka broker and controller listening on 127.0.0.1.

    `data_dir` contains server.properties, the partition logs, the Log4j log
    (logs/server.log) and the JVM's console output (broker.out). When it is
    None, a temporary folder is created at start() and removed by stop().
    Ports left as None are picked from the free ports on 127.0.0.1.

    `scram_users` ({name: password}) adds a SASL_PLAINTEXT listener on
    `sasl_port` (`sasl_bootstrap`), and every user can log in there with
    SCRAM-SHA-256 and SCRAM-SHA-512. The users are written when the storage
    is formatted, so a data dir formatted earlier keeps the users of that
    run. The PLAINTEXT listener on `port` stays open without authentication.

    NOTE: stop() also runs at interpreter exit, but not when the Python process
    is killed by a signal it does not handle (SIGTERM, SIGKILL). The JVM then
    keeps running and must be stopped by its pid.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        *,
        scram_users: dict[str, str] | None = None,
        sasl_port: int | None = None,
    ) -> None:
        if sasl_port is not None and scram_users is None:
            raise ValueError("sasl_port is set but scram_users is None; pass scram_users to open the SASL listener")
        if scram_users is not None:
            check_scram_users(scram_users)
        wants_sasl_port = scram_users is not None and sasl_port is None
        free_ports = iter(pick_free_ports([port, controller_port].count(None) + wants_sasl_port))
        port = next(free_ports) if port is None else port
        controller_port = next(free_ports) if controller_port is None else controller_port
        sasl_port = next(free_ports) if wants_sasl_port else sasl_port
        ports = [port, controller_port] + ([sasl_port] if sasl_port is not None else [])
        if len(set(ports)) != len(ports):
            raise ValueError(
                f"port {port}, controller_port {controller_port} and sasl_port {sasl_port} "
                "must all differ; give different ports"
            )
        self.port = port
        self.controller_port = controller_port
        self.sasl_port = sasl_port
        self._scram_users = dict(scram_users) if scram_users is not None else None
        self._requested_data_dir = Path(data_dir) if data_dir is not None else None
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._process: subprocess.Popen[bytes] | None = None
        self._console: BinaryIO | None = None
        self._lock = threading.RLock()  # stop() runs inside start() on failure.

    @property
    def bootstrap(self) -> str:
        """Bootstrap address for Kafka clients, "127.0.0.1:<port>"."""
        return f"{LOOPBACK_HOST}:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """Bootstrap address of the SASL_PLAINTEXT listener, "127.0.0.1:<sasl_port>".

        Raises KafkaBrokerError when the broker was created without scram_users.
        """
        if self.sasl_port is None:
            raise KafkaBrokerError(
                f"The broker on {self.bootstrap} has no SASL listener; create it with scram_users to open one"
            )
        return f"{LOOPBACK_HOST}:{self.sasl_port}"

    @property
    def data_dir(self) -> Path | None:
        """Folder of config, data and logs (None until start(), and after stop() removes a temporary one)."""
        return self._data_dir

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = DEFAULT_START_TIMEOUT_S) -> KafkaBroker:
        """Start the broker and wait up to `timeout` seconds until it serves clients.

        Calling start() on a running broker does nothing. Raises
        KafkaBrokerError, with the tail of the broker's logs, when the broker
        exits early or does not list itself in a Metadata response in time. The broker
        is stopped before the error is raised.
        """
        with self._lock:
            if self.is_running():
                return self
            try:
                started = time.monotonic()
                self._launch()
                atexit.register(self.stop)
                self._wait_until_ready(timeout)
            except BaseException:
                self.stop()
                raise
        LOG.info(
            "Kafka %s broker serves %s after %.1f s (data dir %s)",
            KAFKA_VERSION,
            self.bootstrap,
            time.monotonic() - started,
            self._data_dir,
        )
        return self

    def stop(self) -> None:
        """Stop the broker with SIGTERM, then SIGKILL after 30 s.

        Removes the data dir only if this object created it. Safe to call
        more than once and on a broker that never started.
        """
        with self._lock:
            atexit.unregister(self.stop)
            process, self._process = self._process, None
            if process is not None:
                terminate_process(process)
                LOG.info(
                    "Kafka broker on %s stopped with exit code %s",
                    self.bootstrap,
                    process.returncode,
                )
            if self._console is not None:
                self._console.close()
                self._console = None
            if self._owns_data_dir and self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)
                self._data_dir = None
                self._owns_data_dir = False

    def log_tail(self) -> str:
        """Return the last lines of the broker's Log4j log and console output."""
        if self._data_dir is None:
            return "(the broker has no data dir yet)"
        return (
            f"--- {self._data_dir / 'logs' / 'server.log'} ---\n"
            f"{read_tail(self._data_dir / 'logs' / 'server.log')}\n"
            f"--- {self._data_dir / 'broker.out'} ---\n"
            f"{read_tail(self._data_dir / 'broker.out')}"
        )

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _prepare_data_dir(self) -> Path:
        if self._requested_data_dir is not None:
            self._data_dir = self._requested_data_dir
            self._data_dir.mkdir(parents=True, exist_ok=True)
        elif self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="yokoten-kafka-"))
            self._owns_data_dir = True
        (self._data_dir / "logs").mkdir(exist_ok=True)
        return self._data_dir

    def _launch(self) -> None:
        """Write server.properties, format the storage and start the JVM."""
        libs = ensure_jars()
        java = require_java()
        data_dir = self._prepare_data_dir()

        properties_path = data_dir / "server.properties"
        settings = broker_properties(self.port, self.controller_port, data_dir / KRAFT_LOG_DIR_NAME, self.sasl_port)
        write_properties(properties_path, settings)
        extra_arguments = scram_arguments(self._scram_users) if self._scram_users else []
        format_storage(java, libs, data_dir, properties_path, extra_arguments)

        command = [
            java,
            *BROKER_JVM_OPTIONS,
            *log4j_options(data_dir),
            "-cp",
            f"{libs}/*",
            BROKER_MAIN_CLASS,
            str(properties_path),
        ]
        LOG.info(
            "Starting Kafka broker on %s (controller port %s, SASL port %s)",
            self.bootstrap,
            self.controller_port,
            self.sasl_port,
        )
        self._console = open(data_dir / "broker.out", "ab")
        # The JVM stays in the caller's process group, so a Ctrl-C in the
        # terminal also stops the broker when Python exits without stop().
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
        )

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                exit_code = None if process is None else process.returncode
                raise KafkaBrokerError(
                    f"The Kafka broker for {self.bootstrap} exited with code "
                    f"{exit_code} before it served clients. Broker logs:\n"
                    f"{self.log_tail()}"
                )
            try:
                brokers = probe_broker(self.port)
            except (OSError, ConnectionError, struct.error) as error:
                last_error = error
            else:
                if not any(node_id == NODE_ID for node_id, _, _ in brokers):
                    last_error = ConnectionError(f"Metadata lists brokers {brokers}")
                elif self.sasl_port is None:
                    return
                else:
                    try:
                        probe_api_versions(self.sasl_port)
                        return
                    except (OSError, ConnectionError, struct.error) as error:
                        last_error = error
            time.sleep(PROBE_INTERVAL_S)
        raise KafkaBrokerError(
            f"The Kafka broker for {self.bootstrap} did not serve Metadata "
            f"within {timeout:g} s (last probe error: {last_error}). Raise "
            f"the timeout on a slow machine. Broker logs:\n{self.log_tail()}"
        )


def log4j_options(data_dir: Path) -> list[str]:
    """Return JVM options that point Log4j 2 at deploy/kafka/log4j2.properties."""
    return [
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG_PATH}",
        f"-Dkafka.logs.dir={data_dir / 'logs'}",
    ]


def format_storage(
    java: str, libs: Path, data_dir: Path, properties_path: Path, extra_arguments: list[str] | None = None
) -> None:
    """Format the KRaft log dir with a new random cluster id.

    `extra_arguments` go to StorageTool's format command, such as the
    --add-scram options from scram_arguments(). A log dir that already
    contains meta.properties, from an earlier run with the same data dir, is
    left as it is. StorageTool would reject it because its cluster id differs
    from the new one.
    """
    meta_properties = data_dir / KRAFT_LOG_DIR_NAME / "meta.properties"
    if meta_properties.exists():
        LOG.info("Reusing Kafka storage formatted earlier, see %s", meta_properties)
        if extra_arguments:
            LOG.warning(
                "SCRAM users are created only when the storage is formatted; %s keeps the users of the run "
                "that formatted it. Delete that data dir to create the requested users.",
                data_dir,
            )
        return
    command = [
        java,
        *TOOL_JVM_OPTIONS,
        *log4j_options(data_dir),
        "-cp",
        f"{libs}/*",
        STORAGE_TOOL_MAIN_CLASS,
        "format",
        "--config",
        str(properties_path),
        "--cluster-id",
        new_cluster_id(),
        *(extra_arguments or []),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise KafkaBrokerError(
            f"Formatting Kafka storage with {properties_path} failed with exit "
            f"code {result.returncode}. Delete {data_dir} if it contains data "
            f"from another Kafka version. StorageTool output:\n{output}"
        )
    LOG.debug("StorageTool: %s", result.stdout.strip())


def terminate_process(process: subprocess.Popen[bytes]) -> None:
    """Send SIGTERM, wait up to 30 s for a clean shutdown, then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        LOG.warning(
            "Kafka broker pid %s did not stop within %.0f s after SIGTERM; sending SIGKILL",
            process.pid,
            STOP_TIMEOUT_S,
        )
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=f"Fetch and run a single-node Kafka {KAFKA_VERSION} broker on 127.0.0.1."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help=f"download the Kafka jars into {cache_dir() / 'libs'} and exit")
    run = commands.add_parser("run", help="start the broker and keep it running until SIGINT or SIGTERM")
    run.add_argument("--port", type=int, help="PLAINTEXT listener port (default: a free port)")
    run.add_argument("--controller-port", type=int, help="KRaft controller port (default: a free port)")
    run.add_argument(
        "--scram-users-file",
        type=Path,
        help="file of name=password lines; opens a SASL_PLAINTEXT listener where these users log in "
        "with SCRAM-SHA-256 or SCRAM-SHA-512",
    )
    run.add_argument(
        "--sasl-port", type=int, help="SASL_PLAINTEXT listener port, with --scram-users-file (default: a free port)"
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        help="folder for config, partition data and logs, kept after exit "
        "(default: a temporary folder removed at exit)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT_S,
        help="seconds to wait for the broker to serve clients (default: %(default)s)",
    )
    return parser.parse_args(argv)


def run_until_signal(broker: KafkaBroker, timeout: float) -> int:
    """Start `broker`, print its bootstrap address, and stop it on SIGINT/SIGTERM.

    A signal during start-up raises KeyboardInterrupt, so start() stops the
    half-started broker before the CLI exits.
    """
    stop_requested = threading.Event()
    ready = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        LOG.info("Received %s, stopping the broker", signal.Signals(signum).name)
        stop_requested.set()
        if not ready.is_set():
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        broker.start(timeout=timeout)
        ready.set()
        print(f"bootstrap={broker.bootstrap}", flush=True)
        if broker.sasl_port is not None:
            print(f"sasl_bootstrap={broker.sasl_bootstrap}", flush=True)
        while not stop_requested.wait(1.0):
            if not broker.is_running():
                LOG.error(
                    "The Kafka broker on %s exited unexpectedly. Broker logs:\n%s",
                    broker.bootstrap,
                    broker.log_tail(),
                )
                return 1
    finally:
        broker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        if args.command == "fetch":
            print(ensure_jars())
            return 0
        scram_users = read_scram_users_file(args.scram_users_file) if args.scram_users_file else None
        broker = KafkaBroker(
            args.data_dir, args.port, args.controller_port, scram_users=scram_users, sasl_port=args.sasl_port
        )
        return run_until_signal(broker, args.timeout)
    except (KafkaBrokerError, ValueError, OSError) as error:
        LOG.error("%s", error)
        return 1
    except KeyboardInterrupt:
        LOG.info("Interrupted before the broker was ready")
        return 130


if __name__ == "__main__":
    sys.exit(main())
