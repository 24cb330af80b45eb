"""The Kubernetes manifests in deploy/kubernetes, as an operator applies them with `kubectl apply -k`.

What an operator relies on: the manifests are valid Kubernetes objects (checked offline against the API's
schemas with kubernetes-validate, strict: a misspelt field fails), the kustomization applies all but the
optional files, the server started with the Deployment's command and environment accepts its settings and
answers the probes, the probes, Service and scrape annotations all name the port it listens on, each
replica writes its own audit file on the shared volume and can keep doing so across restarts (the
kubelet's fsGroup handling reproduced on a real directory), the pods run as the image's user without
privileges, the termination grace covers the server's drain, every variable named is one the server
reads, and Redis runs with the persistence flags of deploy/compose.yaml.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

import mcp_ci_tools.__main__ as entry
from mcp_ci_tools.config import Settings, load_settings
from mcp_ci_tools.http_app import uvicorn_config
from tests.conftest import free_port
from tests.deploy.test_container import _interpreter_for, image_user, instructions
from tests.processes import wait_until_answering

__all__ = ["image_user"]  # a fixture, used here under the same run conditions as test_container's

ROOT = Path(__file__).parent.parent.parent
K8S = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose.yaml"
# Applied only on purpose (each needs something a cluster may lack): see kustomization.yaml's comment.
OPTIONAL = {"servicemonitor.yaml", "metrics-secret.yaml"}
# Kubernetes releases whose API schemas the manifests must fit: an old one still supported by the
# providers, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# The OpenTelemetry SDK's standard variables (opentelemetry-specification, "Environment Variable
# Specification") that the manifests may name for the `otel` extra.
OTEL_VARIABLES = frozenset(
    {
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_SDK_DISABLED",
    }
)
# Settings being added on other branches, named in comments only until they are settings.
PENDING = frozenset({"MCP_CI_METRICS_TOKEN"})
_VARIABLE = re.compile(r"\b(?:MCP_CI|INFRABOX|OTEL)_[A-Z0-9_]*[A-Z0-9]\b(?![_…])")


# --- the names the server knows ---------------------------------------------------------------------------


def setting_variables() -> frozenset[str]:
    """The environment variable of every setting: MCP_CI_<FIELD>, or the field's alias (INFRABOX_URL)."""
    prefix = str(Settings.model_config.get("env_prefix"))
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias.upper() if isinstance(alias, str) else (prefix + name).upper())
    return frozenset(names)


def known_variables() -> frozenset[str]:
    """Every variable the server reads: the settings, and the log level read before them."""
    read_by_entry = {"MCP_CI_LOG_LEVEL"}
    entry_source = Path(entry.__file__).read_text()
    assert all(f'"{name}"' in entry_source for name in read_by_entry), "the entry point no longer reads it"
    return setting_variables() | read_by_entry


def test_the_known_names_are_the_servers_own() -> None:
    known = known_variables()
    assert {"INFRABOX_URL", "INFRABOX_MCP_TOKEN", "MCP_CI_AUDIT_LOG", "MCP_CI_SHUTDOWN_GRACE"} <= known
    assert "MCP_CI_INFRABOX_URL" not in known and "MCP_CI_AUDIT" not in known
    assert not PENDING & OTEL_VARIABLES
    try:  # with the `otel` extra installed, its own list
        otel = importlib.import_module("opentelemetry.sdk.environment_variables")
    except ImportError:
        return
    assert {name for name in OTEL_VARIABLES if not hasattr(otel, name)} <= {"OTEL_SDK_DISABLED"}


# --- reading the manifests -------------------------------------------------------------------------------


def documents(path: Path) -> list[dict[str, Any]]:
    found = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in found), path
    return found


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def kustomization() -> dict[str, Any]:
    (found,) = documents(K8S / "kustomization.yaml")
    return found


def applied() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k` creates: those of the kustomization's resources."""
    return [doc for name in kustomization()["resources"] for doc in documents(K8S / name)]


def the(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in applied() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def pod_spec(workload: str) -> dict[str, Any]:
    spec: dict[str, Any] = the("Deployment", workload)["spec"]["template"]["spec"]
    return spec


def container(workload: str) -> dict[str, Any]:
    (found,) = pod_spec(workload)["containers"]
    return dict(found)


def environment(workload: str = "mcp-ci-tools") -> dict[str, str]:
    """The container's environment: its envFrom ConfigMaps, then its own env (which wins)."""
    spec = container(workload)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        env.update(the("ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({item["name"]: item["value"] for item in spec.get("env", []) if "value" in item})
    return env


def container_port(workload: str, port: int | str) -> int:
    """A port as a number: a named one resolved through the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container(workload)["ports"] if p["name"] == port]
    return int(number)


def server_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings the server starts with, from the Deployment's command and environment."""
    command = container("mcp-ci-tools")["command"]
    assert command[0] == "mcp-ci-tools"
    return load_settings(command[1:], environment() if env is None else env)


def test_every_manifest_is_a_valid_kubernetes_object() -> None:
    for path in manifest_files():
        for doc in documents(path):
            if doc["apiVersion"] == "monitoring.coreos.com/v1":  # a CRD: no schema in Kubernetes itself
                assert path.name in OPTIONAL
                continue
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_catches_a_misspelt_field() -> None:
    broken = copy.deepcopy(the("Deployment", "mcp-ci-tools"))
    probe = broken["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = probe

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_kustomization_applies_every_manifest_but_the_optional_ones() -> None:
    resources = kustomization()["resources"]

    assert sorted(resources) == sorted({path.name for path in manifest_files()} - OPTIONAL)
    assert {path.name for path in manifest_files()} >= OPTIONAL  # they exist, to be added on purpose
    (image,) = kustomization()["images"]
    assert image["name"] == container("mcp-ci-tools")["image"]  # the rewrite finds the image


def test_kubectl_builds_the_kustomization() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization was checked without building it")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(built) if doc]

    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in applied()
    )
    (deployment,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "mcp-ci-tools"
    ]
    (image,) = kustomization()["images"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"{image['newName']}:{image['newTag']}"
    )


# --- the server's port and probes ------------------------------------------------------------------------


def test_the_server_accepts_the_deployments_settings() -> None:
    settings = server_settings()

    assert settings.transport == "streamable-http" and settings.host == "0.0.0.0"
    assert settings.allowed_hosts  # reachable through an ingress host, not only loopback
    assert settings.state_url is not None
    assert settings.token is None  # HTTP callers bring their own token


def test_the_probes_ask_healthz_and_readyz_on_the_port_the_server_listens_on() -> None:
    port = server_settings().port
    spec = container("mcp-ci-tools")
    probes = {kind: spec[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}

    assert [p["containerPort"] for p in spec["ports"] if p["name"] == "http"] == [port]
    assert {kind: container_port("mcp-ci-tools", probe["port"]) for kind, probe in probes.items()} == {
        kind: port for kind in probes
    }
    assert probes["startupProbe"]["path"] == probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"


@contextmanager
def serving_the_deployment(volume: Path) -> Iterator[str]:
    """The server started with the Deployment's command and environment, on loopback and a free port,
    without Redis, the audit volume's mount path moved to `volume`; yields its base URL."""
    audit, mount = audit_mount()
    port = free_port()
    argv = [*container("mcp-ci-tools")["command"][1:]]
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    env = {name: value for name, value in environment().items() if name != "MCP_CI_STATE_URL"}
    env |= {"MCP_CI_AUDIT_LOG": str(volume / audit.relative_to(mount)), "PATH": os.environ["PATH"]}
    server = subprocess.Popen(
        [sys.executable, "-m", "mcp_ci_tools", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(base + "/healthz", server)
        yield base
    finally:
        server.terminate()
        server.communicate(timeout=15)


def test_the_probe_paths_answer_on_the_server_started_with_the_deployments_command(tmp_path: Path) -> None:
    spec = container("mcp-ci-tools")
    paths = {spec[kind]["httpGet"]["path"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}

    with serving_the_deployment(tmp_path) as base:
        port = urlsplit(base).port
        # The kubelet probes the pod's IP: a Host header no --allowed-host names.
        answers = {path: httpx.get(base + path, headers={"Host": f"10.1.2.3:{port}"}) for path in paths}

    assert {path: answer.status_code for path, answer in answers.items()} == {path: 200 for path in paths}


def test_the_server_names_its_audit_file_after_the_host(tmp_path: Path) -> None:
    audit, mount = audit_mount()

    with serving_the_deployment(tmp_path):
        made = sorted(path.name for path in (tmp_path / audit.relative_to(mount).parent).iterdir())

    assert made == [audit.name.replace("{host}", socket.gethostname())]


def test_the_service_sends_port_80_to_the_servers_port() -> None:
    service = the("Service", "mcp-ci-tools")["spec"]
    (port,) = service["ports"]
    pod_labels = the("Deployment", "mcp-ci-tools")["spec"]["template"]["metadata"]["labels"]

    assert service["type"] == "ClusterIP"
    assert (port["name"], port["port"]) == ("http", 80)
    assert container_port("mcp-ci-tools", port["targetPort"]) == server_settings().port
    assert service["selector"].items() <= pod_labels.items()


def test_the_scrape_annotations_and_the_service_monitor_name_the_servers_port_and_metrics() -> None:
    annotations = the("Deployment", "mcp-ci-tools")["spec"]["template"]["metadata"]["annotations"]
    (monitor,) = documents(K8S / "servicemonitor.yaml")
    (endpoint,) = monitor["spec"]["endpoints"]
    service = the("Service", "mcp-ci-tools")

    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(server_settings().port)
    assert annotations["prometheus.io/path"] == endpoint["path"] == "/metrics"
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


# --- the audit trail on a shared volume ------------------------------------------------------------------


def audit_mount() -> tuple[PurePosixPath, PurePosixPath]:
    """The audit file (with its {host} placeholder) and the mount path of the volume it is on."""
    audit = PurePosixPath(environment()["MCP_CI_AUDIT_LOG"])
    mounts = [PurePosixPath(m["mountPath"]) for m in container("mcp-ci-tools")["volumeMounts"]]
    (mount,) = [m for m in mounts if audit.is_relative_to(m)]
    return audit, mount


def test_each_replica_writes_its_own_audit_file_on_the_shared_volume() -> None:
    audit, mount = audit_mount()
    (mounted,) = [m for m in container("mcp-ci-tools")["volumeMounts"] if m["mountPath"] == str(mount)]
    (volume,) = [v for v in pod_spec("mcp-ci-tools")["volumes"] if v["name"] == mounted["name"]]
    claim = the("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    replicas = the("Deployment", "mcp-ci-tools")["spec"]["replicas"]
    pods = ["mcp-ci-tools-7d4b9c-x2x9q", "mcp-ci-tools-7d4b9c-k8d2m"]  # the host name is the pod name

    assert "{host}" in audit.name and "{host}" not in str(audit.parent)
    assert len({audit.name.replace("{host}", pod) for pod in pods}) == len(pods)
    # The server makes the file's directory itself, below the volume's root (see the next test).
    assert audit.parent.parent == mount
    assert not mounted.get("readOnly", False)
    assert replicas > 1 and claim["spec"]["accessModes"] == ["ReadWriteMany"]


def kubelet_sets_volume_ownership(root: Path, fs_group: int, policy: str) -> None:
    """What the kubelet does to a volume before mounting it for a pod with `fsGroup` (its
    SetVolumeOwnership): every file gets the group and group read/write, every directory also group
    execute and setgid; with `OnRootMismatch` nothing is done when the root already has all that."""
    wanted = 0o660 | 0o110 | stat.S_ISGID
    info = root.stat()
    if policy == "OnRootMismatch" and info.st_gid == fs_group and info.st_mode & wanted == wanted:
        return
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.lchown(path, -1, fs_group)
        mask = 0o660 | (0o110 | stat.S_ISGID if path.is_dir() else 0)
        path.chmod(stat.S_IMODE(path.stat().st_mode) | mask)


_WRITE_ONE_RECORD = """
import sys
from pathlib import Path
from mcp_ci_tools.audit import JsonlFileSink
try:
    JsonlFileSink(Path(sys.argv[1])).write('{"event":"probe"}', durable=True)
    print("written")
except OSError as error:
    print("refused:", error)
"""


@pytest.fixture
def volume() -> Iterator[Path]:
    """A fresh volume as a provisioner makes it: a directory owned by root, 0755."""
    root = Path(tempfile.mkdtemp(prefix="mcp-ci-volume-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def test_the_audit_file_stays_writable_across_restarts_with_the_pods_fsgroup(
    image_user: Any, volume: Path
) -> None:
    security = pod_spec("mcp-ci-tools")["securityContext"]
    audit, mount = audit_mount()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path[1:]])}
    python = _interpreter_for(image_user, env)
    if python is None:
        pytest.skip("no interpreter with this checkout's packages is readable by the image-like user")

    def write_as_the_server(path: Path) -> str:
        run = subprocess.run(
            [python, "-c", _WRITE_ONE_RECORD, str(path)],
            env=env,
            user=image_user.pw_uid,
            group=image_user.pw_gid,
            extra_groups=[image_user.pw_gid],  # fsGroup is a supplementary group of the pod's processes
            capture_output=True,
            text=True,
            check=True,
        )
        return run.stdout.strip()

    def start_pod(policy: str) -> None:
        kubelet_sets_volume_ownership(volume, image_user.pw_gid, policy)

    in_volume = volume / audit.relative_to(mount).parent / audit.name.replace("{host}", "mcp-ci-tools-0")
    assert security["fsGroup"] == security["runAsGroup"]

    start_pod(security["fsGroupChangePolicy"])
    first = write_as_the_server(in_volume)
    start_pod(security["fsGroupChangePolicy"])  # the pod restarts: the volume is mounted again
    again = write_as_the_server(in_volume)
    start_pod("Always")  # the default policy, for comparison
    with_always = write_as_the_server(in_volume)
    at_the_root = write_as_the_server(volume / "audit-mcp-ci-tools-1.jsonl")  # had the mount been the dir

    assert (first, again) == ("written", "written")
    assert with_always.startswith("refused:") and "other users can write" in with_always
    assert at_the_root.startswith("refused:") and "other users can write" in at_the_root
    assert in_volume.read_text().count('"probe"') == 2


# --- privileges ------------------------------------------------------------------------------------------


def image_uid() -> int:
    """The uid of the Dockerfile's USER: the one it gives `useradd`, else the first system uid Debian's
    useradd hands out (999: the highest free one below 1000, and python:*-slim has none taken)."""
    found = instructions()
    user = next(rest for keyword, rest in found if keyword == "USER")
    base = next(rest for keyword, rest in found if keyword == "FROM")
    runs = " ".join(rest for keyword, rest in found if keyword == "RUN")
    created = re.search(rf"useradd ([^&;]*) {re.escape(user)}\b", runs)
    assert created is not None, f"the Dockerfile does not create its USER {user}"
    pinned = re.search(r"(?:--uid|-u) (\d+)", created.group(1))
    if pinned:
        return int(pinned.group(1))
    assert "--system" in created.group(1)
    assert re.fullmatch(r"python:[\d.]+-slim(?:-bookworm|-trixie)?", base), f"recheck the uid for {base}"
    return 999


def test_the_pods_run_as_the_images_user_without_privileges() -> None:
    uid = image_uid()
    for workload in ("mcp-ci-tools", "redis"):
        spec = pod_spec(workload)
        security = spec["securityContext"]
        assert spec["automountServiceAccountToken"] is False, workload
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0, workload
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, workload
        for each in spec["containers"]:
            assert each["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, workload
    assert pod_spec("mcp-ci-tools")["securityContext"]["runAsUser"] == uid


def test_the_server_can_write_where_it_needs_to_on_a_read_only_root() -> None:
    audit, mount = audit_mount()
    mounts = {m["mountPath"] for m in container("mcp-ci-tools")["volumeMounts"]}

    assert "/tmp" in mounts
    assert audit.is_relative_to(mount)


def test_service_links_stay_out_of_the_servers_variables() -> None:
    prefix = str(Settings.model_config.get("env_prefix"))
    services = [doc["metadata"]["name"] for doc in applied() if doc["kind"] == "Service"]
    clashing = [name for name in services if name.upper().replace("-", "_").startswith(prefix)]

    assert clashing == ["mcp-ci-tools"]  # its links would be MCP_CI_TOOLS_…
    assert pod_spec("mcp-ci-tools")["enableServiceLinks"] is False


def test_the_termination_grace_covers_the_preStop_pause_and_the_drain() -> None:
    settings = server_settings()
    spec = container("mcp-ci-tools")
    pause = spec["lifecycle"]["preStop"]["exec"]["command"]
    http_shutdown = uvicorn_config(app=None, settings=settings).timeout_graceful_shutdown  # type: ignore[arg-type]

    assert pause[0] == "sleep"
    assert http_shutdown is not None
    needed = float(pause[1]) + settings.shutdown_grace + http_shutdown
    assert pod_spec("mcp-ci-tools")["terminationGracePeriodSeconds"] > needed


def test_the_containers_have_resource_requests_and_limits() -> None:
    for workload in ("mcp-ci-tools", "redis"):
        resources = container(workload)["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), workload
        assert "memory" in resources["limits"], workload


# --- variable names --------------------------------------------------------------------------------------


def test_every_variable_the_manifests_set_is_one_the_server_reads() -> None:
    set_here = set(environment())
    for workload in ("mcp-ci-tools", "redis"):
        set_here |= {item["name"] for item in container(workload).get("env", [])}

    assert {"INFRABOX_URL", "MCP_CI_ALLOW_TRIGGER", "MCP_CI_STATE_URL", "MCP_CI_AUDIT_LOG"} <= set_here
    assert set_here - known_variables() == set()


def test_every_variable_named_anywhere_in_the_deploy_files_is_a_real_one() -> None:
    """Comments too: an operator uncomments OTEL_… or MCP_CI_CONFIRM and expects it to work."""
    named: dict[str, set[str]] = {}
    for path in [*K8S.glob("*.yaml"), COMPOSE]:
        for name in _VARIABLE.findall(path.read_text()):
            named.setdefault(name, set()).add(path.name)
    unknown = {name: files for name, files in named.items() if name not in known_variables() | OTEL_VARIABLES}

    assert {"INFRABOX_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "MCP_CI_METRICS_TOKEN"} <= named.keys()
    assert unknown.keys() <= PENDING, unknown


def test_a_pending_setting_is_named_only_in_comments() -> None:
    for path in K8S.glob("*.yaml"):
        text = json.dumps([doc for doc in yaml.safe_load_all(path.read_text()) if doc])
        assert not PENDING & set(_VARIABLE.findall(text)), path.name


def test_the_compose_file_sets_only_variables_the_server_reads() -> None:
    (compose,) = documents(COMPOSE)
    replicas = {name: s for name, s in compose["services"].items() if name.startswith("mcp-ci-tools")}

    assert len(replicas) == 2
    for service in replicas.values():
        assert set(service["environment"]) - known_variables() == set()


# --- Redis -----------------------------------------------------------------------------------------------


def test_redis_runs_with_the_compose_files_persistence_flags_on_its_own_volume() -> None:
    (compose,) = documents(COMPOSE)
    redis = container("redis")
    (data,) = redis["volumeMounts"]
    (volume,) = pod_spec("redis")["volumes"]
    claim = the("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    state = urlsplit(environment()["MCP_CI_STATE_URL"])
    (port,) = the("Service", "redis")["spec"]["ports"]

    assert redis["args"] == compose["services"]["redis"]["command"]
    assert "command" not in redis  # the image's entrypoint stays, as in compose
    assert data["mountPath"] == "/data" and data["name"] == volume["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    deployment = the("Deployment", "redis")["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"]["type"] == "Recreate"
    assert (state.hostname, state.port) == ("redis", port["port"])
    assert container_port("redis", port["targetPort"]) == 6379


# --- the README's list --------------------------------------------------------------------------------------


def test_the_readme_lists_every_deploy_file() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Deploy files") :]
    section = section[: section.index("\n## ")]
    listed = set(re.findall(r"^\| `([^`]+)` \|", section, re.M))
    files = {str(path.relative_to(ROOT)) for path in (ROOT / "deploy").rglob("*") if path.is_file()}

    assert listed == files | {"server.json"}


def test_a_disruption_leaves_a_replica_serving() -> None:
    budget = the("PodDisruptionBudget", "mcp-ci-tools")["spec"]
    pod_labels = the("Deployment", "mcp-ci-tools")["spec"]["template"]["metadata"]["labels"]
    (spread,) = pod_spec("mcp-ci-tools")["topologySpreadConstraints"]

    assert 1 <= budget["minAvailable"] < the("Deployment", "mcp-ci-tools")["spec"]["replicas"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"].items() <= pod_labels.items()
