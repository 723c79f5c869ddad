"""docker-compose.yml, the Dockerfile and Grafana provisioning, checked without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dashboards.build import build_all
from dashboards.model import DATASOURCE_UID, PLUGIN_ID
from pipeline.settings import Settings

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (add pyyaml to the dev extras)")

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
_INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?-([^}]*))?\}")
_REQUIRED_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):\?([^}]+)\}")  # ${VAR:?message}: compose stops without it
_REQUIRED = {"kafka", "clickhouse", "grafana", "mailpit", "worker", "writer", "generator"}
ENV_EXAMPLE = ROOT / ".env.example"
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|SIGNING_KEY|TOKEN|JAAS")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def example_env() -> dict[str, str]:
    lines = [ln.strip() for ln in ENV_EXAMPLE.read_text().splitlines()]
    return dict(ln.split("=", 1) for ln in lines if ln and not ln.startswith("#"))


def interpolate(value: str) -> str:
    """What compose substitutes with `.env.example` as `.env` (`${X:-default}` → default, `${X:?…}` → its value)."""
    example = example_env()
    value = _REQUIRED_VAR.sub(lambda m: example[m.group(1)], value)
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load(COMPOSE)
    assert isinstance(data, dict)
    return data


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): interpolate(str(v)) for k, v in env.items()}


def test_every_required_service_has_an_image_or_build(compose: dict[str, Any]) -> None:
    """Kafka, ClickHouse, Grafana, Mailpit, workers, writer and generator are all defined and buildable."""
    services = compose["services"]
    assert services.keys() >= _REQUIRED
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), f"{name} has neither image nor build"
        build = svc.get("build")
        if isinstance(build, str):
            build = {"context": build}
        if build:
            assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()


def test_tw_variables_are_real_settings_with_valid_values(compose: dict[str, Any]) -> None:
    """Every TW_* variable names a Settings field, and the values of each service validate."""
    fields = set(Settings.model_fields)
    seen = 0
    for name, svc in compose["services"].items():
        tw = {k: v for k, v in env_of(svc).items() if k.startswith("TW_")}
        unknown = sorted(k for k in tw if k.removeprefix("TW_").lower() not in fields)
        assert unknown == [], f"{name}: not Settings fields: {unknown}"
        if tw:
            seen += 1
            settings = Settings(**{k.removeprefix("TW_").lower(): v for k, v in tw.items()})
            assert settings.dsn.startswith("http://")
            assert "@clickhouse:8123/" in settings.dsn
            assert settings.broker == "kafka:9092"
            assert settings.smtp_host == "mailpit"
    assert seen >= 4


def test_start_order_waits_on_health(compose: dict[str, Any]) -> None:
    """depends_on conditions point at services that have a healthcheck (or are one-shot jobs)."""
    services = compose["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on must use conditions"
        for dep, rule in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{dep} has no healthcheck but {name} waits for it"
            else:
                assert condition == "service_completed_successfully"
                assert services[dep].get("restart") == "no", f"{dep} is waited on to finish but restarts"
    for name in ("kafka", "clickhouse", "grafana", "mailpit", "worker", "writer"):
        assert services[name].get("healthcheck"), f"{name} needs a healthcheck"
    assert services["writer"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["generator"]["depends_on"]["worker"]["condition"] == "service_healthy"


def test_workers_can_scale(compose: dict[str, Any]) -> None:
    """`--scale worker=3` needs no fixed container name and no published host port."""
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")


def test_bind_mounts_exist_in_the_repo(compose: dict[str, Any]) -> None:
    """Every ./relative mount source is a path in the repository."""
    mounts = [(name, str(v).split(":")[0]) for name, svc in compose["services"].items() for v in svc.get("volumes", [])]
    binds = [(n, src) for n, src in mounts if src.startswith(".")]
    assert binds
    for name, src in binds:
        assert (ROOT / src).exists(), f"{name}: mount source {src} missing"


def test_grafana_gets_the_plugin_provisioning_and_boards(compose: dict[str, Any]) -> None:
    """The plugin is installed, the provisioning env is set, and the provider path is where the JSON is mounted."""
    grafana = compose["services"]["grafana"]
    env = env_of(grafana)
    assert PLUGIN_ID in env["GF_INSTALL_PLUGINS"].split(",")
    ds_file = ROOT / "dashboards/provisioning/datasources/clickhouse.yaml"
    (datasource,) = load(ds_file)["datasources"]
    assert (datasource["type"], datasource["uid"]) == (PLUGIN_ID, DATASOURCE_UID)
    needed = set(_INTERPOLATION.findall(ds_file.read_text()))
    assert {var for var, _ in needed} <= env.keys()
    (provider,) = load(ROOT / "dashboards/provisioning/dashboards/tenantwatch.yaml")["providers"]
    targets = {str(v).split(":")[1]: str(v).split(":")[0] for v in grafana["volumes"]}
    assert targets[provider["options"]["path"]] == "./dashboards/json"
    assert targets["/etc/grafana/provisioning"] == "./dashboards/provisioning"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"])
    assert Path(home).name in build_all()


def test_dockerfile_copies_what_exists() -> None:
    """Every COPY source of the Dockerfile (outside other stages) exists, and the entry point is the CLI."""
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src
    assert 'ENTRYPOINT ["tenantwatch"]' in text


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    """Every password, key and secret (and the DSN's password) is a required `${VAR:?…}` from the environment."""
    checked = 0
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            raw = str(value)
            if _SECRET_NAME.search(key) and "JAAS" not in key:
                assert _REQUIRED_VAR.fullmatch(raw), f"{name}.{key} is not a required variable: {raw!r}"
                checked += 1
            if "://" in raw and "@" in raw:  # a URL with credentials
                password = raw.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
                assert _REQUIRED_VAR.fullmatch(password), f"{name}.{key}: literal password in a URL"
                checked += 1
    assert checked >= 8, "the secrets of ClickHouse, Grafana, Kafka and the signing key were found"
    text = COMPOSE.read_text()
    assert not re.search(r"\$\{[A-Z_]*(PASSWORD|SIGNING_KEY)[A-Z_]*:-", text), "a secret with a default value"
    assert "admin/admin" not in text


def test_grafana_has_no_default_administrator(compose: dict[str, Any]) -> None:
    """Grafana's admin password is required from the environment, never admin."""
    env = compose["services"]["grafana"]["environment"]
    assert _REQUIRED_VAR.fullmatch(str(env["GF_SECURITY_ADMIN_PASSWORD"]))
    assert interpolate(str(env["GF_SECURITY_ADMIN_USER"])) != "admin"


def test_dot_env_is_ignored_and_the_example_lists_every_required_variable(compose: dict[str, Any]) -> None:
    """`.env` is kept out of git and the image; `.env.example` names each `${VAR:?…}`, and ships no usable key."""
    import subprocess

    for ignore in (".gitignore", ".dockerignore"):
        assert ".env" in (ROOT / ignore).read_text().splitlines(), f".env missing from {ignore}"
    tracked = subprocess.run(["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert tracked.stdout == ""
    required = {m.group(1) for m in _REQUIRED_VAR.finditer(COMPOSE.read_text())}
    assert required >= {"TW_SIGNING_KEY", "CLICKHOUSE_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "KAFKA_PASSWORD"}
    assert required <= example_env().keys()

    from pipeline.ops.startup_checks import startup_verdict

    tw = {k: v for k, v in env_of(compose["services"]["worker"]).items() if k.startswith("TW_")}
    settings = Settings(**{k.removeprefix("TW_").lower(): v for k, v in tw.items()})
    assert startup_verdict(settings).refuse, "the example's signing key cannot run a worker against kafka:9092"


def test_kafka_clients_authenticate_with_scram(compose: dict[str, Any]) -> None:
    """Clients reach the broker only on its SASL listener, with the mechanism it enables and credentials set."""
    from pipeline.adapters.kafka_config import client_kwargs

    kafka = {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    for name, address in listeners.items():  # reachable from other containers only if SASL (or the controller)
        if not address.startswith("127.0.0.1:") and name != kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]:
            assert protocols[name] in ("SASL_PLAINTEXT", "SASL_SSL"), f"listener {name} is open"
    for name, svc in compose["services"].items():
        tw = {k: v for k, v in env_of(svc).items() if k.startswith("TW_")}
        if not tw:
            continue
        settings = Settings(**{k.removeprefix("TW_").lower(): v for k, v in tw.items()})
        client_listener = next(n for n, a in advertised.items() if a == settings.broker)
        assert protocols[client_listener] == settings.kafka_security_protocol, name
        assert settings.kafka_sasl_mechanism in kafka["KAFKA_SASL_ENABLED_MECHANISMS"].split(","), name
        assert client_kwargs(settings, "faust")["broker_credentials"].username == settings.kafka_username
