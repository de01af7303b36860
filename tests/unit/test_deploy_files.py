"""Checks of the deployment files against the code they deploy.

Docker and a Kubernetes cluster are not available to these tests. So they parse
the Dockerfile, deploy/compose.yaml and the Prometheus, Grafana and Kubernetes
files, and compare them with the code. Metric names come from service/metrics.py,
setting names and validation from service/config.py, commands from service/cli.py
and endpoints from service/http.py. Tests that read YAML skip when PyYAML is not
installed, and the promtool tests skip when promtool is not on PATH.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from service import metrics
from service.cli import build_parser
from service.config import Settings, load_settings
from service.http import start_http_server

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = DEPLOY / "compose.yaml"
PROMETHEUS_DIR = DEPLOY / "prometheus"
ALERTS_FILE = PROMETHEUS_DIR / "alerts.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
GRAFANA_DIR = DEPLOY / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "yokoten.json"
KUBERNETES_DIR = DEPLOY / "kubernetes"

SERVICE_UID = "10001"
METRICS_PORT = 9308
APP_SERVICES = {"topics": ["topics", "create"], "matcher": ["matcher"], "correlator": ["correlator"]}
SCRAPE_JOBS = {"yokoten-matcher": "matcher", "yokoten-correlator": "correlator"}
DEPLOYMENTS = {"matcher-deployment.yaml": "matcher", "correlator-deployment.yaml": "correlator"}


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def yaml() -> Any:
    return pytest.importorskip(
        "yaml", reason="PyYAML is not installed in this environment, so the YAML deployment files cannot be parsed"
    )


def load_yaml_documents(yaml: Any, path: Path) -> list[Any]:
    """Return the non-empty documents of a YAML file."""
    with path.open(encoding="utf-8") as stream:
        return [document for document in yaml.safe_load_all(stream) if document is not None]


def load_yaml(yaml: Any, path: Path) -> Any:
    documents = load_yaml_documents(yaml, path)
    assert len(documents) == 1, f"{path.relative_to(ROOT)} should contain exactly one YAML document"
    return documents[0]


def exposed_metric_names() -> set[str]:
    """Return every sample name that service/metrics.py exports, such as yokoten_batch_duration_seconds_bucket."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


KNOWN_METRICS = exposed_metric_names()


def promql_metric_names(expression: str) -> set[str]:
    """Return the yokoten_* metric names in a PromQL expression, ignoring quoted label values."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expression)
    return set(re.findall(r"(?<![\w:])yokoten_[A-Za-z0-9_:]*", without_strings))


def job_matchers(expression: str) -> set[str]:
    """Return the job names that job="..." and job=~"a|b" matchers of an expression select."""
    jobs: set[str] = set()
    for operator, value in re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', expression):
        jobs.update(value.split("|") if operator == "=~" else [value])
    return jobs


def settings_variables() -> set[str]:
    return {f"YOKOTEN_{name.upper()}" for name in Settings.model_fields}


def validate_settings(monkeypatch: pytest.MonkeyPatch, environment: dict[str, Any]) -> Settings:
    """Load the settings from exactly these YOKOTEN_* variables, as the service does at start-up."""
    for key in list(os.environ):
        if key.startswith("YOKOTEN_"):
            monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    return load_settings()


def parse_cli(argv: list[str]) -> None:
    """Fail the test when ``yokoten ARGV`` is not a valid command line."""
    try:
        build_parser().parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"`yokoten {' '.join(argv)}` is not a valid command line (exit {error.code})")


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_stages() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """Return the global ARG defaults and the instructions of each stage, FROM first."""
    global_args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        elif not stages and keyword == "ARG":
            name, _, default = arguments.partition("=")
            global_args[name] = default
            continue
        stages[-1].append((keyword, arguments))
    return global_args, stages


def stage_base_image(stage: list[tuple[str, str]], global_args: dict[str, str]) -> str:
    image = stage[0][1].split()[0]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda match: global_args[match.group(1) or match.group(2)], image)


def final_stage() -> list[tuple[str, str]]:
    return dockerfile_stages()[1][-1]


def last_argument(stage: list[tuple[str, str]], keyword: str) -> str | None:
    values = [arguments for instruction, arguments in stage if instruction == keyword]
    return values[-1] if values else None


def final_stage_env() -> dict[str, str]:
    environment: dict[str, str] = {}
    for keyword, arguments in final_stage():
        if keyword == "ENV":
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                environment[name] = value
    return environment


def healthcheck_command() -> list[str]:
    arguments = last_argument(final_stage(), "HEALTHCHECK")
    assert arguments is not None, "the final stage has no HEALTHCHECK"
    _, _, command = arguments.partition("CMD ")
    return json.loads(command)


def test_dockerfile_stages_use_python_311_slim() -> None:
    global_args, stages = dockerfile_stages()
    assert len(stages) >= 2, "the Dockerfile should be multi-stage"
    for stage in stages:
        assert stage_base_image(stage, global_args) == "python:3.11-slim"
    final_text = "\n".join(arguments for _, arguments in stages[-1])
    earlier_text = "\n".join(arguments for stage in stages[:-1] for _, arguments in stage)
    assert "build-essential" in earlier_text or "gcc" in earlier_text, "the build stage should install a C compiler"
    for tool in ("build-essential", "gcc", "apt-get install"):
        assert tool not in final_text, f"the final stage should not install build tools ({tool})"
    assert any(keyword == "COPY" and arguments.startswith("--from=") for keyword, arguments in stages[-1])


def test_dockerfile_user_is_not_root() -> None:
    user = last_argument(final_stage(), "USER")
    assert user is not None, "the final stage has no USER line, so the container would run as root"
    uid = user.split(":")[0]
    assert uid not in {"root", "0"}
    # Kubernetes can verify runAsNonRoot only for a numeric USER.
    assert uid == SERVICE_UID


def test_dockerfile_entrypoint_cmd_and_port() -> None:
    stage = final_stage()
    assert json.loads(last_argument(stage, "ENTRYPOINT") or "null") == ["yokoten"]
    command = json.loads(last_argument(stage, "CMD") or "null")
    assert command == ["matcher"]
    parse_cli(command)
    assert (last_argument(stage, "EXPOSE") or "").split() == [str(METRICS_PORT)]
    assert Settings.model_fields["metrics_port"].default == METRICS_PORT
    environment = final_stage_env()
    assert environment["YOKOTEN_METRICS_HOST"] == "0.0.0.0"
    assert {key for key in environment if key.startswith("YOKOTEN_")} <= settings_variables()


def test_dockerfile_copies_every_package() -> None:
    copied: set[str] = set()
    for stage in dockerfile_stages()[1]:
        for keyword, arguments in stage:
            if keyword == "COPY" and not arguments.startswith("--from="):
                tokens = [token for token in shlex.split(arguments) if not token.startswith("--")]
                for source in tokens[:-1]:
                    assert (ROOT / source).exists(), f"COPY source {source} does not exist"
                    copied.add(source.rstrip("/"))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    top_level_packages = {name.split(".")[0] for name in pyproject["tool"]["setuptools"]["packages"]}
    assert top_level_packages | {"pyproject.toml"} <= copied

    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (".git", ".venv", ".pytest_cache", ".hypothesis"):
        assert required in patterns, f".dockerignore should exclude {required}"
    for source in copied:
        excluded = [pattern for pattern in patterns if not pattern.startswith("!") and fnmatch.fnmatch(source, pattern)]
        assert not excluded, f"{source} is copied by the Dockerfile but excluded by .dockerignore {excluded}"


def test_dockerfile_healthcheck_uses_urllib() -> None:
    command = healthcheck_command()
    script = " ".join(command)
    assert command[0] == "python"
    assert "urllib" in script
    assert "http://127.0.0.1:{port}/healthz" in script
    assert f"'YOKOTEN_METRICS_PORT', '{METRICS_PORT}'" in script, "the port should default to the metrics port"
    assert "curl" not in script
    assert "wget" not in script


def test_dockerfile_healthcheck_against_http_server() -> None:
    """Run the HEALTHCHECK command against service/http.py on a loopback port, then after the server stops."""
    command = [sys.executable, *healthcheck_command()[1:]]

    async def run_check(port: int) -> int:
        environment = {**os.environ, "YOKOTEN_METRICS_PORT": str(port)}
        process = await asyncio.create_subprocess_exec(
            *command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return await asyncio.wait_for(process.wait(), timeout=30)

    async def scenario() -> tuple[int, int]:
        runner = await start_http_server("127.0.0.1", 0, lambda: False)
        try:
            port = runner.addresses[0][1]
            healthy = await run_check(port)
        finally:
            await runner.cleanup()
        stopped = await run_check(port)
        return healthy, stopped

    healthy, stopped = asyncio.run(scenario())
    assert healthy == 0, "the HEALTHCHECK failed although /healthz answered"
    assert stopped != 0, "the HEALTHCHECK passed although no server was listening"


# ---------------------------------------------------------------- docker compose


@pytest.fixture(scope="module")
def compose(yaml: Any) -> dict[str, Any]:
    return load_yaml(yaml, COMPOSE_FILE)


def test_deploy_yaml_files_parse(yaml: Any) -> None:
    paths = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert len(paths) >= 10
    for path in paths:
        assert load_yaml_documents(yaml, path), f"{path.relative_to(ROOT)} has no YAML document"


def test_compose_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "topics", "matcher", "correlator", "prometheus", "grafana"}
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    for name, repository in (("prometheus", "prom/prometheus"), ("grafana", "grafana/grafana")):
        image_name, _, tag = services[name]["image"].partition(":")
        assert image_name == repository
        assert tag and tag != "latest", f"{name} should use a pinned image tag"


def test_compose_app_services_commands(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    for name, command in APP_SERVICES.items():
        service = services[name]
        context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
        assert context == ROOT
        assert (context / service["build"].get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
        assert service["command"] == command
        parse_cli(command)
        environment = service["environment"]
        assert set(environment) <= settings_variables()
        settings = validate_settings(monkeypatch, environment)
        assert settings.metrics_host == "0.0.0.0"
        assert settings.metrics_port == METRICS_PORT


def test_compose_kafka_kraft_listeners(compose: dict[str, Any]) -> None:
    environment = compose["services"]["kafka"]["environment"]
    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id, _, controller = environment["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node_id == str(environment["KAFKA_NODE_ID"])

    protocol_map = dict(item.split(":") for item in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = dict(item.split("://") for item in environment["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in environment["KAFKA_ADVERTISED_LISTENERS"].split(","))
    controller_name = environment["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller_name in listeners
    assert controller_name not in advertised, "the controller listener should not be advertised to clients"
    assert controller.endswith(listeners[controller_name])
    assert set(listeners) <= set(protocol_map)
    assert set(advertised) <= set(listeners)
    for name, address in advertised.items():
        assert listeners[name].rsplit(":", 1)[1] == address.rsplit(":", 1)[1]

    for service_name in APP_SERVICES:
        bootstrap = compose["services"][service_name]["environment"]["YOKOTEN_BOOTSTRAP_SERVERS"]
        assert bootstrap in advertised.values(), f"{service_name} uses {bootstrap}, which Kafka does not advertise"
        assert bootstrap.split(":")[0] == "kafka"


def test_compose_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def conditions(name: str) -> dict[str, str]:
        return {dependency: spec["condition"] for dependency, spec in services[name].get("depends_on", {}).items()}

    assert conditions("topics") == {"kafka": "service_healthy"}
    for name in ("matcher", "correlator"):
        assert conditions(name) == {"kafka": "service_healthy", "topics": "service_completed_successfully"}
    assert conditions("grafana")["prometheus"] == "service_healthy"
    assert set(conditions("prometheus")) >= {"matcher", "correlator"}

    for name in services:
        for dependency, condition in conditions(name).items():
            if condition == "service_healthy":
                healthcheck = services[dependency].get("healthcheck", {})
                assert healthcheck.get("test"), f"{dependency} has no healthcheck"
                assert not healthcheck.get("disable"), f"{dependency} has its healthcheck disabled"
    # A one-shot job must not restart: unless-stopped or always would run it again after each exit.
    assert services["topics"].get("restart", "no") == "no"


def test_compose_worker_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("matcher", "correlator"):
        script = " ".join(compose["services"][name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{METRICS_PORT}/healthz" in script
        assert str(METRICS_PORT) in [str(port) for port in compose["services"][name].get("expose", [])]


def test_compose_workers_outlast_the_shutdown_timeout(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker sends SIGKILL after stop_grace_period, which must leave the matcher time to commit its batch."""
    for name in ("matcher", "correlator"):
        service = compose["services"][name]
        grace = service["stop_grace_period"]
        assert grace.endswith("s")
        timeout = validate_settings(monkeypatch, service["environment"]).shutdown_timeout_s
        assert float(grace[:-1]) > timeout, f"{name}: stop_grace_period {grace} <= shutdown timeout {timeout} s"


def test_compose_matcher_can_be_scaled(compose: dict[str, Any]) -> None:
    matcher = compose["services"]["matcher"]
    assert matcher["deploy"]["replicas"] >= 1
    # A fixed host port or container name would make `--scale matcher=N` fail.
    assert "ports" not in matcher
    assert "container_name" not in matcher


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Return container path -> host path of the relative bind mounts of a compose service."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (COMPOSE_FILE.parent / source).resolve()
    return mounts


def test_compose_bind_mounts(yaml: Any, compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name} mounts {source} at {target}, which does not exist"

    prometheus = compose["services"]["prometheus"]
    config_flag = next(flag for flag in prometheus["command"] if flag.startswith("--config.file="))
    config_path = Path(config_flag.partition("=")[2])
    assert bind_mounts(prometheus)[str(config_path.parent)] == PROMETHEUS_DIR
    assert config_path.name == PROMETHEUS_CONFIG.name

    grafana = compose["services"]["grafana"]
    grafana_mounts = bind_mounts(grafana)
    assert grafana_mounts["/etc/grafana/provisioning/datasources"] == GRAFANA_DIR / "provisioning" / "datasources"
    assert grafana_mounts["/etc/grafana/provisioning/dashboards"] == GRAFANA_DIR / "provisioning" / "dashboards"
    provider = load_yaml(yaml, GRAFANA_DIR / "provisioning" / "dashboards" / "yokoten.yaml")["providers"][0]
    assert provider["type"] == "file"
    dashboards_path = provider["options"]["path"]
    assert grafana_mounts[dashboards_path] == DASHBOARD_FILE.parent
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert grafana_mounts[str(home.parent)] / home.name == DASHBOARD_FILE


# ---------------------------------------------------------------- Prometheus


@pytest.fixture(scope="module")
def alert_rules(yaml: Any) -> list[dict[str, Any]]:
    document = load_yaml(yaml, ALERTS_FILE)
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_prometheus_config_scrapes_workers(yaml: Any) -> None:
    config = load_yaml(yaml, PROMETHEUS_CONFIG)
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_CONFIG.parent / rule_file).resolve() == ALERTS_FILE
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job_name, service_name in SCRAPE_JOBS.items():
        job = jobs[job_name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = {(name, sd["port"]) for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
        targets |= {
            tuple(target.rsplit(":", 1)) for static in job.get("static_configs", []) for target in static["targets"]
        }
        assert {(host, int(port)) for host, port in targets} == {(service_name, METRICS_PORT)}


def test_alert_rules_cover_operator_signals(alert_rules: list[dict[str, Any]]) -> None:
    expressions = {rule["alert"]: " ".join(str(rule["expr"]).split()) for rule in alert_rules}
    assert len(expressions) == len(alert_rules), "alert names should be unique"

    def find(pattern: str) -> str:
        matches = [name for name, expression in expressions.items() if re.search(pattern, expression)]
        assert matches, f"no alert rule matches {pattern!r}"
        return matches[0]

    lag = find(r"yokoten_consumer_lag")
    assert re.search(r"by \(topic, partition\)", expressions[lag])
    find(r"time\(\) - yokoten_ioc_newest_record_timestamp_seconds")
    find(r"rate\(yokoten_records_rejected_total(\{[^}]*\})?\[")
    no_input = find(r"rate\(yokoten_events_consumed_total(\{[^}]*\})?\[[^\]]+\]\)\) == 0")
    assert next(rule for rule in alert_rules if rule["alert"] == no_input)["for"] == "15m"
    find(r"yokoten_ready\{[^}]*\} == 0")


def test_alert_rules_annotations_and_metrics(alert_rules: list[dict[str, Any]]) -> None:
    for rule in alert_rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule.get("for"), f"{name} should wait before firing"
        assert len(rule["annotations"]["summary"]) > 20, name
        assert len(rule["annotations"]["description"]) > 80, f"{name} needs a description an operator can act on"
        unknown = promql_metric_names(str(rule["expr"])) - KNOWN_METRICS
        assert not unknown, f"{name} uses metrics that service/metrics.py does not define: {sorted(unknown)}"
        assert job_matchers(str(rule["expr"])) <= set(SCRAPE_JOBS), f"{name} selects a job that is not scraped"


# ---------------------------------------------------------------- promtool


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed; on Debian, `apt-get install prometheus` provides /usr/bin/promtool")
    return path


def run_promtool(promtool: str, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, arguments)], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def test_promtool_check_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", ALERTS_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config(promtool: str) -> None:
    result = run_promtool(promtool, "check", "config", PROMETHEUS_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    """Return a promtool input series. Values use promtool's expanding notation, such as 0+60x40."""
    label_text = ",".join(f'{name}="{value}"' for name, value in labels.items())
    return {"series": f"{metric}{{{label_text}}}", "values": values}


def expect(eval_time: str, alertname: str, *alerts: dict[str, str]) -> dict[str, Any]:
    """Return a promtool alert test: at eval_time, alertname fires once for each label set given."""
    return {"eval_time": eval_time, "alertname": alertname, "exp_alerts": [{"exp_labels": labels} for labels in alerts]}


MATCHER = "yokoten-matcher"
CORRELATOR = "yokoten-correlator"
LAG = "yokoten_consumer_lag"
NEWEST_IOC = "yokoten_ioc_newest_record_timestamp_seconds"
REJECTED = "yokoten_records_rejected_total"
CONSUMED = "yokoten_events_consumed_total"

# One promtool test group per scenario. Samples are 1 minute apart, and promtool's clock starts at the epoch.
ALERT_SCENARIOS: list[dict[str, Any]] = [
    {
        "input_series": [
            series(LAG, "20000x30", job=MATCHER, instance="m1", topic="yokoten.edr", partition="0"),
            series(LAG, "10x30", job=MATCHER, instance="m1", topic="yokoten.edr", partition="1"),
        ],
        "alert_rule_test": [
            expect("5m", "YokotenConsumerLagHigh"),
            expect("15m", "YokotenConsumerLagHigh", {"severity": "warning", "topic": "yokoten.edr", "partition": "0"}),
        ],
    },
    {
        # The fresh matcher's newest IOC timestamp keeps up with the clock, and the stale
        # one is stuck at 1 s after the epoch. The correlator exports 0 and must not alert.
        "input_series": [
            series(NEWEST_IOC, "0+60x1600", job=MATCHER, instance="fresh"),
            series(NEWEST_IOC, "1x1600", job=MATCHER, instance="stale"),
            series(NEWEST_IOC, "0x1600", job=CORRELATOR, instance="c1"),
        ],
        "alert_rule_test": [
            expect("1500m", "YokotenIocFeedStale", {"severity": "warning", "job": MATCHER, "instance": "stale"}),
        ],
    },
    {
        "input_series": [
            series(REJECTED, "0+60x40", job=MATCHER, instance="m1", source="edr", reason="parse"),
            series(REJECTED, "0+1x40", job=MATCHER, instance="m1", source="mail", reason="parse"),
        ],
        "alert_rule_test": [
            expect("30m", "YokotenDeadLettersRising", {"severity": "warning", "source": "edr", "reason": "parse"}),
        ],
    },
    {
        "input_series": [
            series("yokoten_prefilter_misses_total", "0x10 1x20", job=MATCHER, instance="m1"),
            series("yokoten_prefilter_misses_total", "0x30", job=MATCHER, instance="m2"),
        ],
        "alert_rule_test": [
            expect("5m", "YokotenPrefilterMiss"),
            expect("15m", "YokotenPrefilterMiss", {"severity": "critical", "job": MATCHER, "instance": "m1"}),
        ],
    },
    {
        "input_series": [
            series(CONSUMED, "100x40", job=MATCHER, instance="m1", source="edr"),
            series(CONSUMED, "0+600x40", job=MATCHER, instance="m1", source="mail"),
        ],
        "alert_rule_test": [
            expect("10m", "YokotenNoInput"),
            expect("25m", "YokotenNoInput", {"severity": "critical", "source": "edr"}),
        ],
    },
    {
        # No matcher has consumed anything since it started, so the counter has no series.
        "input_series": [series("yokoten_ready", "1x30", job=MATCHER, instance="m1")],
        "alert_rule_test": [expect("20m", "YokotenNoInput", {"severity": "critical", "job": MATCHER})],
    },
    {
        "input_series": [
            series("yokoten_ready", "0x20", job=MATCHER, instance="m1"),
            series("yokoten_ready", "1x20", job=MATCHER, instance="m2"),
            series("up", "0x20", job=CORRELATOR, instance="c1"),
            series("up", "1x20", job=MATCHER, instance="m1"),
        ],
        "alert_rule_test": [
            expect("10m", "YokotenWorkerNotReady", {"severity": "warning", "job": MATCHER, "instance": "m1"}),
            expect("10m", "YokotenWorkerDown", {"severity": "critical", "job": CORRELATOR, "instance": "c1"}),
        ],
    },
]


def test_promtool_alert_scenarios(promtool: str, yaml: Any, tmp_path: Path) -> None:
    """Run `promtool test rules` on synthetic series for every alert.

    promtool compares rendered annotations too, so the rules are copied without
    annotations. `promtool check rules` above has parsed their templates.
    """
    rules = load_yaml(yaml, ALERTS_FILE)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules_copy = tmp_path / "alerts-without-annotations.json"
    rules_copy.write_text(json.dumps(rules), encoding="utf-8")
    tested = {case["alertname"] for scenario in ALERT_SCENARIOS for case in scenario["alert_rule_test"]}
    defined = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert tested == defined, f"alerts without a promtool scenario: {sorted(defined - tested)}"

    # JSON is valid YAML, so promtool reads both files as written.
    test_file = tmp_path / "alerts-test.json"
    test_file.write_text(
        json.dumps(
            {
                "rule_files": [str(rules_copy)],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", **scenario} for scenario in ALERT_SCENARIOS],
            }
        ),
        encoding="utf-8",
    )
    result = run_promtool(promtool, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- Grafana


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every panel, including those nested in collapsed rows."""
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard_panels(dashboard) for target in panel.get("targets", [])]


def test_dashboard_panel_ids_and_layout() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard_panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids should be unique"
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]
        if panel["type"] != "row":
            assert panel.get("targets"), f"{panel['title']} has no query"
            assert all(target.get("expr") for target in panel["targets"]), panel["title"]


def test_dashboard_metrics_are_defined() -> None:
    for expression in dashboard_expressions(load_dashboard()):
        unknown = promql_metric_names(expression) - KNOWN_METRICS
        assert not unknown, f"{expression!r} uses metrics that service/metrics.py does not define: {sorted(unknown)}"


def test_dashboard_has_operator_panels() -> None:
    expressions = [" ".join(expression.split()) for expression in dashboard_expressions(load_dashboard())]
    required = {
        "events consumed per source": r"sum by \(source\) \(rate\(yokoten_events_consumed_total\[",
        "matches per IOC type": r"sum by \(ioc_type\) \(rate\(yokoten_matches_total\[",
        "alerts per severity": r"sum by \(severity\) \((rate|increase)\(yokoten_alerts_total\[",
        "dead letters per reason": r"by \([^)]*reason[^)]*\) \(rate\(yokoten_records_rejected_total\[",
        "IOCs loaded per type": r"by \(type\) \(yokoten_iocs_loaded\)",
        "feed freshness": r"time\(\) - .*yokoten_ioc_newest_record_timestamp_seconds",
        "batch duration p50": r"histogram_quantile\(0\.5, .*yokoten_batch_duration_seconds_bucket",
        "batch duration p99": r"histogram_quantile\(0\.99, .*yokoten_batch_duration_seconds_bucket",
        "event delay": r"histogram_quantile\(0\.99, .*yokoten_event_delay_seconds_bucket",
        "consumer lag": r"yokoten_consumer_lag",
        "ready": r"yokoten_ready",
    }
    missing = [name for name, pattern in required.items() if not any(re.search(pattern, e) for e in expressions)]
    assert not missing, f"dashboard lacks panels for {missing}"


def test_dashboard_datasource_is_provisioned(yaml: Any) -> None:
    datasources = load_yaml(yaml, GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml")["datasources"]
    (datasource,) = [source for source in datasources if source["type"] == "prometheus"]
    assert datasource["url"] == "http://prometheus:9090", "Grafana should reach the compose prometheus service"
    dashboard = load_dashboard()
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    allowed = {datasource["uid"]}
    for name, variable in variables.items():
        if variable["type"] == "datasource":
            assert variable["query"] == "prometheus"
            assert variable["current"]["value"] == datasource["uid"]
            allowed.add(f"${{{name}}}")
    for panel in dashboard_panels(dashboard):
        for item in [panel, *panel.get("targets", [])]:
            if "datasource" in item:
                assert item["datasource"]["uid"] in allowed, f"{panel['title']} uses datasource {item['datasource']}"


# ---------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def manifests(yaml: Any) -> dict[str, list[dict[str, Any]]]:
    return {path.name: load_yaml_documents(yaml, path) for path in sorted(KUBERNETES_DIR.glob("*.yaml"))}


def find_manifest(manifests: dict[str, list[dict[str, Any]]], file_name: str, kind: str) -> dict[str, Any]:
    (document,) = [document for document in manifests[file_name] if document["kind"] == kind]
    return document


def test_kubernetes_manifest_kinds(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    expected = {
        "configmap.yaml": {("v1", "ConfigMap")},
        "matcher-deployment.yaml": {("apps/v1", "Deployment")},
        "correlator-deployment.yaml": {("apps/v1", "Deployment")},
        "service.yaml": {("v1", "Service")},
        "hpa.yaml": {("autoscaling/v2", "HorizontalPodAutoscaler")},
    }
    assert set(manifests) == set(expected)
    for file_name, documents in manifests.items():
        assert {(document["apiVersion"], document["kind"]) for document in documents} == expected[file_name]
        for document in documents:
            assert document["metadata"]["name"], file_name
            assert "namespace" not in document["metadata"], f"{file_name} should leave the namespace to kubectl -n"


def test_kubernetes_configmap_settings_valid(
    manifests: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = find_manifest(manifests, "configmap.yaml", "ConfigMap")["data"]
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values must be strings"
    assert set(data) <= settings_variables()
    assert "YOKOTEN_SASL_PASSWORD" not in data, "the SASL password belongs in a Secret"
    settings = validate_settings(monkeypatch, data)
    assert settings.metrics_host == "0.0.0.0"
    assert settings.metrics_port == METRICS_PORT


@pytest.mark.parametrize("file_name", sorted(DEPLOYMENTS))
def test_kubernetes_deployment_probes_and_security(
    manifests: dict[str, list[dict[str, Any]]], file_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = find_manifest(manifests, file_name, "Deployment")
    template = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    assert selector["app.kubernetes.io/component"] == DEPLOYMENTS[file_name]

    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == SERVICE_UID
    (container,) = pod["containers"]
    assert container["args"] == [DEPLOYMENTS[file_name]]
    parse_cli(container["args"])
    configmap_name = find_manifest(manifests, "configmap.yaml", "ConfigMap")["metadata"]["name"]
    assert {"configMapRef": {"name": configmap_name}} in container["envFrom"]

    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe_name, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, f"{probe_name} should request {path}"
        assert ports.get(probe["port"], probe["port"]) == METRICS_PORT

    settings = validate_settings(monkeypatch, find_manifest(manifests, "configmap.yaml", "ConfigMap")["data"])
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_timeout_s

    resources = container["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert "ALL" in security["capabilities"]["drop"]


def test_kubernetes_correlator_writable_workdir(manifests: dict[str, list[dict[str, Any]]]) -> None:
    """faust writes its data directory into the image's WORKDIR, which a read-only root filesystem forbids."""
    workdir = last_argument(final_stage(), "WORKDIR")
    deployment = find_manifest(manifests, "correlator-deployment.yaml", "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert workdir in {mount["mountPath"] for mount in container["volumeMounts"]}


def test_kubernetes_services_metrics_port(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    services = manifests["service.yaml"]
    for file_name, component in DEPLOYMENTS.items():
        labels = find_manifest(manifests, file_name, "Deployment")["spec"]["template"]["metadata"]["labels"]
        matching = [service for service in services if service["spec"]["selector"].items() <= labels.items()]
        assert len(matching) == 1, f"expected one Service selecting the {component} pods"
        (port,) = matching[0]["spec"]["ports"]
        assert port["port"] == METRICS_PORT
        assert port["targetPort"] == "metrics"


def test_kubernetes_hpa_uses_consumer_lag(manifests: dict[str, list[dict[str, Any]]]) -> None:
    hpa = find_manifest(manifests, "hpa.yaml", "HorizontalPodAutoscaler")["spec"]
    matcher = find_manifest(manifests, "matcher-deployment.yaml", "Deployment")
    target = hpa["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert target["name"] == matcher["metadata"]["name"]
    assert "replicas" not in matcher["spec"], "the HPA owns the matcher replica count"
    (metric,) = hpa["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "yokoten_consumer_lag"
    assert metric["external"]["metric"]["name"] in KNOWN_METRICS
    partitions = int(find_manifest(manifests, "configmap.yaml", "ConfigMap")["data"]["YOKOTEN_PARTITIONS"])
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"] <= partitions
