"""Checks of the Helm chart with the real tools, offline.

helm (pinned, and the oldest helm the chart supports, both built from their Go module),
kubeconform, the Kubernetes JSON schemas, the monitoring CRDs and KEDA's CRDs come from
scripts/helm/install.sh, which caches them under
${LEADROUTER_CACHE:-~/.cache/leadrouter}/helm. When they are missing these tests fail: run
`bash scripts/helm/install.sh` (or `make tools`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from topics import catalogue as cat

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "leadrouter"
INSTALLER = REPO / "scripts" / "helm" / "install.sh"
RELEASE = "lr"
NAMESPACE = "sales-ops"
WORKER_SELECTOR = {
    "app.kubernetes.io/name": "leadrouter",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "worker",
}

# Every optional part switched on, with the knobs around them set, so that the schema
# validation sees every branch of the templates.
ALL_ON: dict[str, Any] = {
    "metrics": {
        "serviceMonitor": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "scrapeTimeout": "10s",
            "relabelings": [
                {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
            ],
            "metricRelabelings": [
                {"regex": "go_.*", "action": "drop", "sourceLabels": ["__name__"]}
            ],
        },
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Sales"}},
        "service": {"annotations": {"example.com/team": "revops"}},
    },
    "autoscaling": {
        "enabled": True,
        "targetMemoryUtilizationPercentage": 80,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
    },
    "podDisruptionBudget": {"enabled": True},
    "topicsJob": {"enabled": True, "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
    "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    "kafka": {
        "existingSecret": "kafka-credentials",
        "caSecret": {"name": "kafka-ca"},
        "topicPrefix": "prod.",
    },
    "extraEnv": [{"name": "LEADROUTER_LOG_LEVEL", "value": "DEBUG"}],
    "imagePullSecrets": [{"name": "regcred"}],
    "image": {"digest": "sha256:" + "ab" * 32},
    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    "podAnnotations": {"example.com/owner": "revops"},
    "podLabels": {"team": "revops"},
    "commonLabels": {"cost-center": "sales"},
    "serviceAccount": {"annotations": {"example.com/role": "leadrouter"}},
    "dataVolume": {"sizeLimit": "2Gi"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"}
    ],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "leadrouter"}},
                    },
                }
            ]
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
        }
    ],
    "priorityClassName": "business-critical",
}

# ALL_ON with KEDA instead of the HPA (the two exclude each other), with the chart's
# TriggerAuthentication (SASL and a CA) and every KEDA knob set.
KEDA_ON: dict[str, Any] = {
    **ALL_ON,
    "autoscaling": {"enabled": False},
    "keda": {
        "enabled": True,
        "minReplicaCount": 2,
        "maxReplicaCount": 4,
        "pollingInterval": 15,
        "cooldownPeriod": 120,
        "topics": ["marketing.form-fills", "leadrouter.internal"],
        "lagThreshold": 5000,
        "activationLagThreshold": 10,
        "offsetResetPolicy": "latest",
        "sasl": "scram_sha512",
        "tls": True,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
    },
}


# --- the tools ----------------------------------------------------------------------------


@cache
def pins() -> dict[str, str]:
    """The NAME=value pins at the top of scripts/helm/install.sh."""
    text = INSTALLER.read_text()
    return dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', text, flags=re.MULTILINE))


def tool_root() -> Path:
    cache_dir = os.environ.get("LEADROUTER_CACHE") or str(Path.home() / ".cache" / "leadrouter")
    return Path(cache_dir) / "helm"


def installed(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `bash scripts/helm/install.sh` (or `make tools`)")
    return path


# The pinned helm and the oldest helm 3 the chart supports (Chart.yaml says which).
HELM_PINS = ["HELM_VERSION", "HELM_OLDEST_VERSION"]


def helm_of(pin: str) -> Path:
    return installed(tool_root() / f"helm-{pins()[pin]}" / "helm")


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm."""
    return helm_of("HELM_VERSION")


@pytest.fixture(scope="session", params=HELM_PINS, ids=lambda pin: pins()[pin])
def any_helm(request: pytest.FixtureRequest) -> Path:
    """Each helm the chart supports: the pinned one and the oldest."""
    return helm_of(request.param)


@pytest.fixture(scope="session")
def kubeconform() -> Path:
    return installed(tool_root() / f"kubeconform-{pins()['KUBECONFORM_VERSION']}" / "kubeconform")


@pytest.fixture(scope="session")
def kubernetes_schemas() -> Path:
    d = tool_root() / f"kubernetes-schemas-{pins()['KUBERNETES_VALIDATE_VERSION']}"
    installed(d / ".complete")
    return d


def crd_files() -> list[Path]:
    """The CRDs of the optional kinds: ServiceMonitor and PrometheusRule (prometheus-operator),
    ScaledObject and TriggerAuthentication (KEDA)."""
    files = []
    for d, n in (
        (f"prometheus-operator-crds-{pins()['PROMETHEUS_OPERATOR_VERSION']}", 2),
        (f"keda-crds-{pins()['KEDA_VERSION']}", 2),
    ):
        installed(tool_root() / d / ".complete")
        found = sorted((tool_root() / d).glob("*.yaml"))
        assert len(found) == n, f"{d}: {found}"
        files += found
    return files


@pytest.fixture(scope="session")
def crd_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JSON schemas of the CRDs of crd_files(), in kubeconform's layout."""
    out = tmp_path_factory.mktemp("crd-schemas")
    for path in crd_files():
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = crd_version_schema(group, kind, version)
            target = out / group / f"{kind.lower()}_{version['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(schema))
    return out


def openapi_to_jsonschema(node: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as a strict JSON schema: objects with properties
    reject unknown fields (unless x-kubernetes-preserve-unknown-fields), `nullable` allows null.
    CEL rules (x-kubernetes-validations) are not checked."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: openapi_to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = openapi_to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [openapi_to_jsonschema(sub) for sub in value]
        elif key == "nullable" or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_version_schema(group: str, kind: str, version: dict[str, Any]) -> dict[str, Any]:
    schema = openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
    schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "spec"})
    return schema


def run(cmd: list[str | Path], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
        )
    return proc


def values_args(tmp_path: Path, values: dict[str, Any] | None) -> list[str | Path]:
    if not values:
        return []
    path = tmp_path / f"values-{hashlib.sha256(repr(values).encode()).hexdigest()[:12]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return ["-f", path]


def template_text(
    helm: Path, tmp_path: Path, values: dict[str, Any] | None = None, *args: str
) -> str:
    cmd = [helm, "template", RELEASE, CHART, "--namespace", NAMESPACE]
    return run([*cmd, *values_args(tmp_path, values), *args]).stdout


def render(
    helm: Path, tmp_path: Path, values: dict[str, Any] | None = None, *args: str
) -> list[dict]:
    text = template_text(helm, tmp_path, values, *args)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def nested(path: str, value: Any) -> dict[str, Any]:
    for key in reversed(path.split(".")):
        value = {key: value}
    return value


def worker(docs: list[dict]) -> dict:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# --- the tools themselves -------------------------------------------------------------------


@pytest.mark.parametrize("pin", HELM_PINS)
def test_helm_is_the_pinned_version(pin: str) -> None:
    out = run([helm_of(pin), "version", "--short"]).stdout
    assert out.startswith(pins()[pin] + "+") or out.strip() == pins()[pin]


def version_tuple(version: str) -> tuple[int, ...]:
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", version)
    assert m, f"not a version: {version}"
    return tuple(int(g) for g in m.groups())


def test_oldest_helm_is_the_one_the_chart_claims() -> None:
    oldest = pins()["HELM_OLDEST_VERSION"]
    assert (3, 0, 0) <= version_tuple(oldest) < (3, 15, 0), f"{oldest}: a helm 3 up to 3.14"
    assert version_tuple(oldest) < version_tuple(pins()["HELM_VERSION"])
    assert "v" + chart()["annotations"]["leadrouter.io/minimum-helm-version"] == oldest
    for doc in (REPO / "README.md", REPO / "docs" / "kubernetes.md"):
        assert f"helm {oldest.lstrip('v')}" in doc.read_text(), f"{doc.name} names the oldest helm"


def test_helm_assumes_a_current_kubernetes(any_helm: Path, tmp_path: Path) -> None:
    # Built without helm's Makefile ldflags, helm would assume Kubernetes 1.20 and refuse the
    # chart's kubeVersion; the installer sets them from helm's client-go.
    docs = render(any_helm, tmp_path, None, "--show-only", "templates/deployment.yaml")
    assert one(docs, "Deployment")


# --- lint and render ------------------------------------------------------------------------


VARIANTS = [None, ALL_ON, KEDA_ON]
VARIANT_IDS = ["defaults", "all-on", "keda-on"]


@pytest.mark.parametrize("values", VARIANTS, ids=VARIANT_IDS)
def test_lint_strict(any_helm: Path, tmp_path: Path, values: dict | None) -> None:
    proc = run([any_helm, "lint", "--strict", CHART, *values_args(tmp_path, values)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


def test_lint_strict_fails_on_a_broken_chart(any_helm: Path, tmp_path: Path) -> None:
    # The control: the same lint fails when values.yaml lacks a key the schema requires (what
    # helm 3.19 made of the null defaults).
    copy = tmp_path / "leadrouter"
    shutil.copytree(CHART, copy)
    values = (copy / "values.yaml").read_text()
    line = '  pullPolicy: "IfNotPresent"\n'
    assert values.count(line) == 1
    (copy / "values.yaml").write_text(values.replace(line, ""))
    proc = run([any_helm, "lint", "--strict", copy], check=False)
    assert proc.returncode != 0
    assert "pullPolicy" in proc.stdout + proc.stderr


@pytest.mark.parametrize("values", VARIANTS, ids=VARIANT_IDS)
def test_oldest_and_pinned_helm_render_the_same(tmp_path: Path, values: dict | None) -> None:
    docs = {pin: render(helm_of(pin), tmp_path, values) for pin in HELM_PINS}
    assert docs["HELM_VERSION"], "rendered nothing"
    assert docs["HELM_OLDEST_VERSION"] == docs["HELM_VERSION"]


def test_values_a_user_sets_to_null_turn_that_setting_off(any_helm: Path, tmp_path: Path) -> None:
    # helm drops a key set to null from the values before the schema sees them (helm 3.19's
    # lint drops null defaults too): a key whose documented "off" is null must not be required.
    values = {
        "autoscaling": {
            "enabled": True,
            "targetCPUUtilizationPercentage": None,
            "targetMemoryUtilizationPercentage": 80,
        },
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": None},
    }
    proc = run([any_helm, "lint", "--strict", CHART, *values_args(tmp_path, values)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    docs = render(any_helm, tmp_path, values)
    metrics = one(docs, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["resource"]["name"] for m in metrics] == ["memory"]
    assert one(docs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": WORKER_SELECTOR},
    }


def admits_null(schema: dict) -> bool:
    types = schema.get("type")
    if types == "null" or (isinstance(types, list) and "null" in types):
        return True
    return any(admits_null(s) for s in schema.get("anyOf", []) + schema.get("oneOf", []))


def test_values_schema_never_requires_a_key_that_may_be_null() -> None:
    # What made `helm lint --strict` fail on helm 3.19: required keys whose default is null.
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    nullable_required, null_defaults = [], []

    def walk(node: dict, value: Any, where: str) -> None:
        props = node.get("properties", {})
        for name in node.get("required", []):
            if name in props and admits_null(props[name]):
                nullable_required.append(f"{where}.{name}")
        for name, sub in props.items():
            if isinstance(value, dict) and name in value:
                if value[name] is None:
                    null_defaults.append(f"{where}.{name}")
                walk(sub, value[name], f"{where}.{name}")

    walk(schema, defaults, "values")
    assert nullable_required == []
    assert sorted(null_defaults) == [
        "values.autoscaling.targetMemoryUtilizationPercentage",
        "values.podDisruptionBudget.minAvailable",
    ], "the walk sees the null defaults"


def test_defaults_render_only_the_core(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [
        ("ConfigMap", "lr-leadrouter-config"),
        ("Deployment", "lr-leadrouter"),
        ("Service", "lr-leadrouter-metrics"),
        ("ServiceAccount", "lr-leadrouter"),
    ]
    assert all(d["metadata"]["namespace"] == NAMESPACE for d in docs)


OPTIONAL_PARTS = [
    ("metrics.serviceMonitor.enabled", [("ServiceMonitor", "lr-leadrouter")]),
    ("metrics.prometheusRule.enabled", [("PrometheusRule", "lr-leadrouter")]),
    ("metrics.grafanaDashboard.enabled", [("ConfigMap", "lr-leadrouter-dashboards")]),
    ("autoscaling.enabled", [("HorizontalPodAutoscaler", "lr-leadrouter")]),
    ("keda.enabled", [("ScaledObject", "lr-leadrouter")]),
    ("podDisruptionBudget.enabled", [("PodDisruptionBudget", "lr-leadrouter")]),
    (
        "topicsJob.enabled",
        [("ConfigMap", "lr-leadrouter-topics-config"), ("Job", "lr-leadrouter-topics")],
    ),
]


@pytest.mark.parametrize(
    ("switch", "resources"), OPTIONAL_PARTS, ids=[p[0] for p in OPTIONAL_PARTS]
)
def test_optional_part_renders_only_when_enabled(
    helm: Path, tmp_path: Path, switch: str, resources: list[tuple[str, str]]
) -> None:
    def present(docs: list[dict]) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in docs} & set(resources)

    assert present(render(helm, tmp_path)) == set(), "rendered with default values"
    assert present(render(helm, tmp_path, nested(switch, False))) == set(), "rendered when disabled"
    assert present(render(helm, tmp_path, nested(switch, True))) == set(resources)


def test_all_on_renders_every_part(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, ALL_ON)
    kinds = {d["kind"] for d in docs}
    assert kinds == {
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "ServiceMonitor",
        "PrometheusRule",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
    }
    assert "replicas" not in one(docs, "Deployment")["spec"], "the HPA owns the replica count"


def test_no_secret_is_ever_rendered(helm: Path, tmp_path: Path) -> None:
    for values in VARIANTS:
        assert by_kind(render(helm, tmp_path, values), "Secret") == []


# --- schema validation of the rendered manifests --------------------------------------------


@pytest.mark.parametrize("kube_version", pins()["KUBERNETES_SCHEMA_VERSIONS"].split())
def test_manifests_match_kubernetes_and_crd_schemas(
    any_helm: Path,
    kubeconform: Path,
    kubernetes_schemas: Path,
    crd_schemas: Path,
    tmp_path: Path,
    kube_version: str,
) -> None:
    manifests = []
    for name, values in zip(VARIANT_IDS, VARIANTS, strict=True):
        path = tmp_path / f"{name}.yaml"
        path.write_text(template_text(any_helm, tmp_path, values, "--kube-version", kube_version))
        manifests.append(path)
    results = kubeconform_results(
        kubeconform, kubernetes_schemas, crd_schemas, kube_version, manifests
    )
    bad = [r for r in results if r["status"] != "statusValid"]
    assert bad == [], json.dumps(bad, indent=2)
    rendered = [d["kind"] for path in manifests for d in yaml.safe_load_all(path.read_text()) if d]
    assert sorted(r["kind"] for r in results) == sorted(rendered), "every manifest validated"
    assert {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"} <= {
        r["kind"] for r in results
    }


def kubeconform_results(
    kubeconform: Path, k8s: Path, crds: Path, kube_version: str, files: list[Path]
) -> list[dict]:
    proc = run(
        [
            kubeconform,
            "-strict",
            "-verbose",
            "-output",
            "json",
            "-kubernetes-version",
            kube_version,
            "-schema-location",
            f"{k8s}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}"
            "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-schema-location",
            f"{crds}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
            *files,
        ],
        check=False,
    )
    return json.loads(proc.stdout)["resources"]


def test_schema_validation_rejects_broken_manifests(
    helm: Path, kubeconform: Path, kubernetes_schemas: Path, crd_schemas: Path, tmp_path: Path
) -> None:
    # The control: the same validation fails on a manifest that Kubernetes would reject, for a
    # built-in kind and for each CRD, so a passing run above means something.
    docs = render(helm, tmp_path, ALL_ON)
    one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"
    ] = "x"
    one(docs, "Service")["spec"]["selectr"] = {}
    one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["intervl"] = "30s"
    one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"] = "not a list"
    keda = render(helm, tmp_path, KEDA_ON)
    # KEDA's trigger metadata is a map of strings: a number is refused, as KEDA's API server does.
    one(keda, "ScaledObject")["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 5000
    one(keda, "TriggerAuthentication")["spec"]["secretTargetRef"][0]["paramter"] = "username"
    keda = by_kind(keda, "ScaledObject") + by_kind(keda, "TriggerAuthentication")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all(docs + keda))
    version = pins()["KUBERNETES_SCHEMA_VERSIONS"].split()[-1]
    results = kubeconform_results(kubeconform, kubernetes_schemas, crd_schemas, version, [path])
    invalid = {r["kind"] for r in results if r["status"] == "statusInvalid"}
    assert invalid == {
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "ScaledObject",
        "TriggerAuthentication",
    }


# --- selectors and labels -------------------------------------------------------------------


def selectors(docs: list[dict]) -> dict[str, dict]:
    found = {}
    for d in docs:
        kind, spec = d["kind"], d.get("spec", {})
        if kind in ("Deployment", "PodDisruptionBudget", "ServiceMonitor"):
            found[kind] = spec["selector"]["matchLabels"]
        elif kind == "Service":
            found[kind] = spec["selector"]
        if kind == "Deployment":
            for i, c in enumerate(spec["template"]["spec"].get("topologySpreadConstraints", [])):
                found[f"topologySpreadConstraints[{i}]"] = c["labelSelector"]["matchLabels"]
    return found


def test_selectors_are_the_stable_selector_labels(helm: Path, tmp_path: Path) -> None:
    variants = [
        None,
        ALL_ON,
        KEDA_ON,
        # Nothing that changes between upgrades may move a selector (they are immutable).
        {"image": {"tag": "9.9.9"}, "commonLabels": {"a": "b"}, "podLabels": {"c": "d"}},
    ]
    for values in variants:
        found = selectors(render(helm, tmp_path, values))
        assert found, "no selector found"
        for where, labels in found.items():
            assert labels == WORKER_SELECTOR, f"{where} with {values and list(values)}"
    assert len(selectors(render(helm, tmp_path, ALL_ON))) == 5


def test_every_resource_has_the_standard_labels(helm: Path, tmp_path: Path) -> None:
    for d in render(helm, tmp_path, ALL_ON) + render(helm, tmp_path, KEDA_ON):
        labels = d["metadata"]["labels"]
        assert labels["helm.sh/chart"] == "leadrouter-" + chart()["version"], d["kind"]
        assert labels["app.kubernetes.io/name"] == "leadrouter"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == chart()["appVersion"]
        assert labels["cost-center"] == "sales"


def test_pods_carry_their_selector_and_the_job_pod_is_not_a_worker(
    helm: Path, tmp_path: Path
) -> None:
    docs = render(helm, tmp_path, ALL_ON)
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert WORKER_SELECTOR.items() <= pod_labels.items()
    assert pod_labels["team"] == "revops"
    job_labels = one(docs, "Job")["spec"]["template"]["metadata"]["labels"]
    assert not WORKER_SELECTOR.items() <= job_labels.items(), "the worker Service would select it"
    assert job_labels["app.kubernetes.io/component"] == "topics"


# --- the worker pod -------------------------------------------------------------------------


def test_worker_pod_follows_the_worker_contract(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = worker(docs)
    assert c["image"] == f"leadrouter:{chart()['appVersion']}"
    assert c.get("command") is None and c["args"] == ["worker"], (
        "the image's entrypoint is leadrouter"
    )
    assert c["ports"] == [{"name": "http-metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert pod["terminationGracePeriodSeconds"] == 60
    assert "resources" not in c, "resources are unset by default"
    env = env_of(c)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert env["LEADROUTER_CONFIG_DIR"]["value"] == mounts["config"] == "/etc/leadrouter"
    assert env["LEADROUTER_DATA_DIR"]["value"] == mounts["data"]
    assert env["LEADROUTER_METRICS_HOST"]["value"] == "0.0.0.0"
    assert env["LEADROUTER_METRICS_PORT"]["value"] == "9464"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "lr-leadrouter-config"
    assert volumes["data"]["emptyDir"] == {}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http-metrics"


def test_probe_and_image_settings_are_configurable(helm: Path, tmp_path: Path) -> None:
    values = {
        "image": {"repository": "registry.example.com/leadrouter", "tag": "1.2.3"},
        "readinessProbe": {"enabled": False},
        "livenessProbe": {"failureThreshold": 9},
        "terminationGracePeriodSeconds": 120,
        "metrics": {"port": 9500},
    }
    docs = render(helm, tmp_path, values)
    c = worker(docs)
    assert c["image"] == "registry.example.com/leadrouter:1.2.3"
    assert "readinessProbe" not in c
    assert c["livenessProbe"]["failureThreshold"] == 9
    assert c["ports"][0]["containerPort"] == 9500
    assert env_of(c)["LEADROUTER_METRICS_PORT"]["value"] == "9500"
    assert (
        one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
    )
    digest = "sha256:" + "0" * 64
    pinned = worker(render(helm, tmp_path, {"image": {"digest": digest}}))
    assert pinned["image"] == f"leadrouter@{digest}"


def test_broker_connection_comes_from_the_existing_secret(helm: Path, tmp_path: Path) -> None:
    env = env_of(worker(render(helm, tmp_path)))
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
    assert refs == {
        "KAFKA_BOOTSTRAP_SERVERS": {"name": "lr-leadrouter-kafka", "key": "bootstrap-servers"},
        "LEADROUTER_KAFKA_SECURITY_PROTOCOL": {
            "name": "lr-leadrouter-kafka",
            "key": "security-protocol",
            "optional": True,
        },
        "LEADROUTER_KAFKA_SASL_MECHANISM": {
            "name": "lr-leadrouter-kafka",
            "key": "sasl-mechanism",
            "optional": True,
        },
        "LEADROUTER_KAFKA_SASL_USERNAME": {
            "name": "lr-leadrouter-kafka",
            "key": "sasl-username",
            "optional": True,
        },
        "LEADROUTER_KAFKA_SASL_PASSWORD": {
            "name": "lr-leadrouter-kafka",
            "key": "sasl-password",
            "optional": True,
        },
    }
    assert "LEADROUTER_KAFKA_SSL_CAFILE" not in env and "LEADROUTER_TOPIC_PREFIX" not in env

    values = {
        "kafka": {
            "existingSecret": "kafka-credentials",
            "secretKeys": {"saslMechanism": "", "bootstrapServers": "brokers"},
            "caSecret": {"name": "kafka-ca", "key": "ca.pem"},
            "topicPrefix": "prod.",
        }
    }
    docs = render(helm, tmp_path, deep_merge(values, {"topicsJob": {"enabled": True}}))
    pods = [one(docs, kind)["spec"]["template"]["spec"] for kind in ("Deployment", "Job")]
    containers = [
        (pod, c) for pod in pods for c in pod.get("initContainers", []) + pod["containers"]
    ]
    assert len(containers) == 3, "the worker, the Job's topics apply and its config publish"
    for pod, c in containers:
        env = env_of(c)
        assert env["KAFKA_BOOTSTRAP_SERVERS"]["valueFrom"]["secretKeyRef"] == {
            "name": "kafka-credentials",
            "key": "brokers",
        }
        assert "LEADROUTER_KAFKA_SASL_MECHANISM" not in env
        assert env["LEADROUTER_KAFKA_SSL_CAFILE"]["value"] == "/etc/leadrouter-kafka-ca/ca.pem"
        assert env["LEADROUTER_TOPIC_PREFIX"]["value"] == "prod."
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert mounts["kafka-ca"]["mountPath"] == "/etc/leadrouter-kafka-ca"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["kafka-ca"]["secret"] == {
            "secretName": "kafka-ca",
            "items": [{"key": "ca.pem", "path": "ca.pem"}],
        }


# --- config ---------------------------------------------------------------------------------


def repo_config() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((REPO / "config").glob("*.yaml"))}


def test_chart_config_files_are_the_repo_config_files() -> None:
    chart_files = {
        p.name: p.read_text() for p in sorted((CHART / "files" / "config").glob("*.yaml"))
    }
    assert set(repo_config()) >= {"settings.yaml", "scoring.yaml", "routing.yaml", "reps.yaml"}
    assert chart_files == repo_config(), (
        "helm/leadrouter/files/config/ must equal config/ (helm cannot read outside the chart): "
        "cp config/*.yaml helm/leadrouter/files/config/"
    )


def test_configmap_defaults_to_the_repo_config(helm: Path, tmp_path: Path) -> None:
    data = one(render(helm, tmp_path), "ConfigMap", "lr-leadrouter-config")["data"]
    assert data == repo_config()


def test_config_file_override_replaces_that_file_only(helm: Path, tmp_path: Path) -> None:
    routing = "# routed by hand\nqueues: {}\nrules: []\ndefault_queue: smb\n"
    data = one(
        render(helm, tmp_path, {"config": {"routing": routing}}),
        "ConfigMap",
        "lr-leadrouter-config",
    )["data"]
    assert data == {**repo_config(), "routing.yaml": routing}


def checksum(docs: list[dict]) -> str:
    return one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


# The config reaches the workers as files only: config.publish off, or no hook Job to publish it.
FILES_ONLY = {
    "publish-disabled": {"topicsJob": {"enabled": True}, "config": {"publish": {"enabled": False}}},
    "no-topics-job": {"topicsJob": {"enabled": False}, "config": {"publish": {"enabled": True}}},
}


@pytest.mark.parametrize("mode", FILES_ONLY.values(), ids=FILES_ONLY.keys())
def test_config_checksum_rolls_the_pods_on_config_change_only(
    helm: Path, tmp_path: Path, mode: dict[str, Any]
) -> None:
    base = checksum(render(helm, tmp_path, mode))
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum(render(helm, tmp_path, mode)) == base, "stable across renders"
    other = {"replicaCount": 3, "podAnnotations": {"a": "b"}}
    assert checksum(render(helm, tmp_path, deep_merge(mode, other))) == base
    for key in ("settings", "scoring", "routing", "reps"):
        changed = {"config": {key: f"# {key} changed\nx: 1\n"}}
        assert checksum(render(helm, tmp_path, deep_merge(mode, changed))) != base, key
    if not mode["topicsJob"]["enabled"]:
        assert checksum(render(helm, tmp_path)) == base, "the defaults are files only"


PUBLISHED: dict[str, Any] = {"topicsJob": {"enabled": True}}


def deployment_text(helm: Path, tmp_path: Path, values: dict[str, Any]) -> str:
    return template_text(helm, tmp_path, values, "--show-only", "templates/deployment.yaml")


def test_published_config_changes_only_settings_roll_the_pods(helm: Path, tmp_path: Path) -> None:
    # The workers switch to a published version between batches: a change of scoring, routing
    # or reps reaches them without a restart, so the pod template must not change with it.
    # settings.yaml still says how the pod runs (broker, store, metrics): a change rolls them.
    base_docs = render(helm, tmp_path, PUBLISHED)
    base = deployment_text(helm, tmp_path, PUBLISHED)
    assert (
        checksum(base_docs) == hashlib.sha256(repo_config()["settings.yaml"].encode()).hexdigest()
    )
    for key in ("scoring", "routing", "reps"):
        values = deep_merge(PUBLISHED, {"config": {key: f"# {key} changed\nx: 1\n"}})
        assert deployment_text(helm, tmp_path, values) == base, f"{key} rolled the pods"
        docs = render(helm, tmp_path, values)
        for name in ("lr-leadrouter-config", "lr-leadrouter-topics-config"):
            assert one(docs, "ConfigMap", name)["data"][f"{key}.yaml"] == f"# {key} changed\nx: 1\n"
    settings = "kafka:\n  group_id: leads-eu\n"
    docs = render(helm, tmp_path, deep_merge(PUBLISHED, {"config": {"settings": settings}}))
    assert checksum(docs) == hashlib.sha256(settings.encode()).hexdigest() != checksum(base_docs)
    # Turning publishing off goes back to the checksum of the whole config ConfigMap.
    off = deep_merge(PUBLISHED, {"config": {"publish": {"enabled": False}}})
    assert checksum(render(helm, tmp_path, off)) != checksum(base_docs)


def test_topics_job_is_a_pre_install_and_pre_upgrade_hook(helm: Path, tmp_path: Path) -> None:
    values = {
        "topicsJob": {"enabled": True},
        "config": {"settings": "a: 1\n", "publish": {"enabled": False}},
    }
    docs = render(helm, tmp_path, values)
    job = one(docs, "Job")
    hook_cm = one(docs, "ConfigMap", "lr-leadrouter-topics-config")
    for d in (job, hook_cm):
        assert d["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "before-hook-creation" in d["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    weight = int(hook_cm["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert weight < int(job["metadata"]["annotations"]["helm.sh/hook-weight"]), (
        "config exists first"
    )
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["topics", "apply"]
    assert "initContainers" not in pod, "nothing is published"
    assert pod["restartPolicy"] == "Never"
    assert "serviceAccountName" not in pod, (
        "the chart's ServiceAccount does not exist before install"
    )
    assert "resources" not in c
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "lr-leadrouter-topics-config"
    assert env_of(c)["LEADROUTER_CONFIG_DIR"]["value"] == "/etc/leadrouter"
    assert hook_cm["data"] == one(docs, "ConfigMap", "lr-leadrouter-config")["data"]
    assert hook_cm["data"]["settings.yaml"] == "a: 1\n"


def test_topics_job_publishes_the_config_after_applying_the_topics(
    helm: Path, tmp_path: Path
) -> None:
    docs = render(helm, tmp_path, {**PUBLISHED, "config": {"routing": "rules: []\n"}})
    job = one(docs, "Job")
    hook_cm = one(docs, "ConfigMap", "lr-leadrouter-topics-config")
    # `helm rollback` runs only the pre-/post-rollback hooks, those of the revision rolled back
    # to (helm's pkg/action/rollback.go): with them, a rollback publishes that revision's config.
    for d in (job, hook_cm):
        assert d["metadata"]["annotations"]["helm.sh/hook"] == (
            "pre-install,pre-upgrade,pre-rollback"
        )
    pod = job["spec"]["template"]["spec"]
    (topics,) = pod["initContainers"]
    (publish,) = pod["containers"]
    assert topics["args"] == ["topics", "apply"], "the topic exists before anything is published"
    assert publish["args"] == [
        "config",
        "publish",
        "/etc/leadrouter",
        "--note",
        f"helm {RELEASE} revision 1",
    ]
    assert publish.get("command") is None, "the image's entrypoint is leadrouter"
    mounts = {m["name"]: m["mountPath"] for m in publish["volumeMounts"]}
    assert (
        mounts["config"] == env_of(publish)["LEADROUTER_CONFIG_DIR"]["value"] == "/etc/leadrouter"
    )
    assert hook_cm["data"] == one(docs, "ConfigMap", "lr-leadrouter-config")["data"]
    assert hook_cm["data"]["routing.yaml"] == "rules: []\n", "what is published"

    # Both run alike: same image, environment, mounts, security context and resources.
    def rest(c: dict) -> dict:
        return {k: v for k, v in c.items() if k not in ("name", "args")}

    assert rest(topics) == rest(publish)
    for values in (ALL_ON, KEDA_ON):
        pod = one(render(helm, tmp_path, values), "Job")["spec"]["template"]["spec"]
        assert rest(pod["initContainers"][0]) == rest(pod["containers"][0])
        assert pod["containers"][0]["resources"] == values["topicsJob"]["resources"]

    # The note: the release's by default, or the configured one, as it is.
    cmd = [helm, "template", "crm-eu", CHART, "--namespace", NAMESPACE]
    other = yaml.safe_load_all(run([*cmd, *values_args(tmp_path, PUBLISHED)]).stdout)
    (job,) = [d for d in other if d and d["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "helm crm-eu revision 1"
    note = 'routing: "fast-lane" for EMEA \\ ticket #42: it\'s {{ .Release.Name }}'
    values = deep_merge(PUBLISHED, {"config": {"publish": {"note": note}}})
    (publish,) = one(render(helm, tmp_path, values), "Job")["spec"]["template"]["spec"][
        "containers"
    ]
    assert publish["args"][-2:] == ["--note", note]


# --- monitoring -----------------------------------------------------------------------------


def test_prometheus_rule_is_the_alert_rules_file(helm: Path, tmp_path: Path) -> None:
    rules_file = CHART / "rules" / "leadrouter-alerts.yaml"
    rule = one(
        render(helm, tmp_path, {"metrics": {"prometheusRule": {"enabled": True}}}), "PrometheusRule"
    )
    assert rule["spec"] == yaml.safe_load(rules_file.read_text())
    assert rule["spec"]["groups"], "the rules file has groups"


def test_service_monitor_scrapes_the_metrics_service(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, ALL_ON)
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"


def test_dashboard_configmap_carries_the_dashboards_for_the_sidecar(
    helm: Path, tmp_path: Path
) -> None:
    dashboards = {p.name: p.read_text() for p in sorted((CHART / "dashboards").glob("*.json"))}
    assert dashboards, "helm/leadrouter/dashboards/*.json"
    values = {"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}}
    cm = one(render(helm, tmp_path, values), "ConfigMap", "lr-leadrouter-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["data"] == dashboards
    for text in cm["data"].values():
        json.loads(text)


def test_hpa_and_pdb_target_the_worker(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, ALL_ON)
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "lr-leadrouter",
    }
    assert {m["resource"]["name"] for m in hpa["metrics"]} == {"cpu", "memory"}
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb
    pct = one(
        render(helm, tmp_path, {"podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}}),
        "PodDisruptionBudget",
    )
    assert pct["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pct["spec"]


# --- KEDA -----------------------------------------------------------------------------------


def render_error(helm: Path, tmp_path: Path, values: dict[str, Any]) -> str:
    cmd = [helm, "template", RELEASE, CHART, "--namespace", NAMESPACE]
    proc = run([*cmd, *values_args(tmp_path, values)], check=False)
    assert proc.returncode != 0, f"rendered with {values}"
    return proc.stderr


def keda(**extra: Any) -> dict[str, Any]:
    return {"keda": {"enabled": True, **extra}}


def test_scaled_object_scales_the_worker_on_its_group_lag(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, keda())
    spec = one(docs, "ScaledObject")["spec"]
    deployment = one(docs, "Deployment")
    container = worker(docs)
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
        "envSourceContainerName": container["name"],
    }
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    settings = yaml.safe_load(repo_config()["settings.yaml"])["kafka"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, settings["partitions"])
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (30, 300)
    assert "advanced" not in spec
    (trigger,) = spec["triggers"]
    assert trigger == {
        "type": "kafka",
        "metadata": {
            "bootstrapServersFromEnv": "KAFKA_BOOTSTRAP_SERVERS",
            "consumerGroup": settings["group_id"],
            "lagThreshold": "10000",
            "activationLagThreshold": "0",
            "offsetResetPolicy": "earliest",
        },
    }, "no topic: every topic of the group; no authentication on a PLAINTEXT broker"
    # The brokers KEDA reads are the worker's own, from the kafka Secret.
    assert env_of(container)["KAFKA_BOOTSTRAP_SERVERS"]["valueFrom"]["secretKeyRef"]["name"] == (
        "lr-leadrouter-kafka"
    )
    assert by_kind(docs, "TriggerAuthentication") == []
    assert by_kind(docs, "HorizontalPodAutoscaler") == []


def test_scaled_object_follows_the_workers_group_prefix_and_partitions(
    helm: Path, tmp_path: Path
) -> None:
    settings = "kafka:\n  group_id: leads-eu\n  topic_prefix: eu.\n  partitions: 12\n"
    values = deep_merge(
        keda(topics=["marketing.form-fills", "leadrouter.internal"]),
        {"config": {"settings": settings}},
    )
    spec = one(render(helm, tmp_path, values), "ScaledObject")["spec"]
    assert spec["maxReplicaCount"] == 12
    assert [t["metadata"]["topic"] for t in spec["triggers"]] == [
        "eu.marketing.form-fills",
        "eu.leadrouter.internal",
    ]
    assert {t["metadata"]["consumerGroup"] for t in spec["triggers"]} == {"leads-eu"}

    # The chart's kafka.topicPrefix, then extraEnv (last in the container, so it wins).
    values = deep_merge(values, {"kafka": {"topicPrefix": "prod."}})
    spec = one(render(helm, tmp_path, values), "ScaledObject")["spec"]
    assert spec["triggers"][0]["metadata"]["topic"] == "prod.marketing.form-fills"
    values["extraEnv"] = [
        {"name": "LEADROUTER_GROUP_ID", "value": "leads-us"},
        {"name": "LEADROUTER_TOPIC_PREFIX", "value": "us."},
        {"name": "LEADROUTER_PARTITIONS", "value": "3"},
    ]
    spec = one(render(helm, tmp_path, values), "ScaledObject")["spec"]
    assert spec["maxReplicaCount"] == 3
    assert spec["triggers"][0]["metadata"]["topic"] == "us.marketing.form-fills"
    assert spec["triggers"][0]["metadata"]["consumerGroup"] == "leads-us"

    values["extraEnv"] = [
        {"name": "LEADROUTER_GROUP_ID", "valueFrom": {"configMapKeyRef": {"name": "g", "key": "k"}}}
    ]
    assert "extraEnv sets LEADROUTER_GROUP_ID with valueFrom" in render_error(
        helm, tmp_path, values
    )


def test_scaled_object_replicas_are_bounded_by_the_partitions(
    any_helm: Path, tmp_path: Path
) -> None:
    helm = any_helm
    spec = one(render(helm, tmp_path, keda(minReplicaCount=0, maxReplicaCount=6)), "ScaledObject")
    assert (spec["spec"]["minReplicaCount"], spec["spec"]["maxReplicaCount"]) == (0, 6)
    spec = one(render(helm, tmp_path, keda(maxReplicaCount=4)), "ScaledObject")
    assert spec["spec"]["maxReplicaCount"] == 4

    err = render_error(helm, tmp_path, keda(maxReplicaCount=7))
    assert "keda.maxReplicaCount is 7, above the 6 partitions of the worker's topics" in err
    more = deep_merge(
        keda(maxReplicaCount=7), {"config": {"settings": "kafka:\n  partitions: 8\n"}}
    )
    assert one(render(helm, tmp_path, more), "ScaledObject")["spec"]["maxReplicaCount"] == 7
    fewer = {**keda(), "extraEnv": [{"name": "LEADROUTER_PARTITIONS", "value": "2"}]}
    assert one(render(helm, tmp_path, fewer), "ScaledObject")["spec"]["maxReplicaCount"] == 2
    err = render_error(helm, tmp_path, {**fewer, **keda(minReplicaCount=3)})
    assert "keda.minReplicaCount (3) is above the highest replica count (2" in err
    err = render_error(helm, tmp_path, keda(minReplicaCount=5, maxReplicaCount=4))
    assert "keda.minReplicaCount (5) is above the highest replica count (4" in err


def test_keda_and_the_hpa_are_never_both_on(any_helm: Path, tmp_path: Path) -> None:
    helm = any_helm
    err = render_error(helm, tmp_path, {**keda(), "autoscaling": {"enabled": True}})
    assert "keda.enabled and autoscaling.enabled are both true" in err
    err = render_error(helm, tmp_path, {**KEDA_ON, "autoscaling": {"enabled": True}})
    assert "keda.enabled and autoscaling.enabled are both true" in err


def test_keda_authenticates_like_the_worker(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, KEDA_ON)
    spec = one(docs, "ScaledObject")["spec"]
    auth = one(docs, "TriggerAuthentication", "lr-leadrouter-keda")
    assert auth["spec"] == {
        "secretTargetRef": [
            {"parameter": "username", "name": "kafka-credentials", "key": "sasl-username"},
            {"parameter": "password", "name": "kafka-credentials", "key": "sasl-password"},
            {"parameter": "ca", "name": "kafka-ca", "key": "ca.crt"},
        ]
    }
    assert spec["minReplicaCount"] == 2 and spec["maxReplicaCount"] == 4
    assert spec["advanced"] == {
        "horizontalPodAutoscalerConfig": {
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}}
        }
    }
    for trigger in spec["triggers"]:
        assert trigger["authenticationRef"] == {
            "name": "lr-leadrouter-keda",
            "kind": "TriggerAuthentication",
        }
        meta = trigger["metadata"]
        assert (meta["sasl"], meta["tls"]) == ("scram_sha512", "enable")
        assert (meta["lagThreshold"], meta["activationLagThreshold"]) == ("5000", "10")
        assert meta["offsetResetPolicy"] == "latest"

    # TLS with the system CAs and no SASL: nothing to authenticate with.
    spec = one(render(helm, tmp_path, keda(tls=True)), "ScaledObject")["spec"]
    assert spec["triggers"][0]["metadata"]["tls"] == "enable"
    assert "authenticationRef" not in spec["triggers"][0]
    # An existing ClusterTriggerAuthentication instead of the chart's.
    values = keda(
        sasl="plaintext", authenticationRef={"name": "msk", "kind": "ClusterTriggerAuthentication"}
    )
    docs = render(helm, tmp_path, values)
    assert by_kind(docs, "TriggerAuthentication") == []
    trigger = one(docs, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["authenticationRef"] == {"name": "msk", "kind": "ClusterTriggerAuthentication"}
    # SASL needs the username and password keys of the Secret.
    values = {**keda(sasl="scram_sha256"), "kafka": {"secretKeys": {"saslPassword": ""}}}
    assert "keda.sasl is scram_sha256" in render_error(helm, tmp_path, values)


def test_keda_topics_are_the_topics_the_worker_consumes() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    allowed = schema["properties"]["keda"]["properties"]["topics"]["items"]["enum"]
    assert allowed == [*cat.INPUT_KINDS, cat.INTERNAL]


def test_notes_tell_how_keda_scales(helm: Path, tmp_path: Path) -> None:
    notes = render_notes(helm, tmp_path, keda())
    assert 'on the lag of consumer group "leadrouter", between 1 and 6 replicas' in notes
    assert f"--namespace {NAMESPACE} get scaledobject lr-leadrouter" in notes
    assert "WARNING" not in notes
    notes = render_notes(helm, tmp_path, keda(minReplicaCount=0, maxReplicaCount=3))
    assert "between 0 and 3 replicas" in notes
    assert "WARNING: keda.minReplicaCount is 0" in notes


# --- values: schema and documentation -------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "replicas=2"],  # unknown top-level key (the value is replicaCount)
        ["--set", "image.name=x"],  # unknown nested key
        ["--set", "metrics.serviceMonitor.intervl=30s"],
        ["--set", "replicaCount=two"],  # wrong type
        ["--set", "metrics.serviceMonitor.enabled=yes"],
        ["--set", "resources.requests.cpu=lots"],
        ["--set", "kafka.secretKeys.bootstrapServers="],
        ["--set", "podDisruptionBudget.maxUnavailable=some"],
        ["--set", "image.pullPolicy=Sometimes"],
        ["--set-json", 'config={"settings": {"kafka": {}}}'],  # config files are text
        ["--set", "keda.topics={marketing.form-fill}"],  # not a topic the worker reads
        ["--set", "keda.sasl=SCRAM-SHA-512"],  # KEDA's spelling is scram_sha512
        ["--set", "keda.maxReplicaCount=-1"],
        ["--set", "keda.authenticationRef.kind=Secret"],
        ["--set", "config.publish.enabled=yes"],
        ["--set", "config.publish.notes=x"],  # the value is note
    ],
    ids=lambda a: a[1],
)
def test_values_schema_rejects_unknown_keys_and_wrong_types(
    any_helm: Path, args: list[str]
) -> None:
    proc = run([any_helm, "template", RELEASE, CHART, *args], check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


def test_values_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict, where: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, where
            for name, sub in node["properties"].items():
                walk(sub, f"{where}.{name}")

    walk(schema, "values")
    assert set(schema["properties"]) - {"global"} == set(
        yaml.safe_load((CHART / "values.yaml").read_text())
    )


def test_every_value_is_documented_by_a_comment_naming_it() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if not m:
            continue
        indent, key = m.groups()
        # The comment block right above the key; its first line starts with the key's name.
        j = i
        while j > 0 and lines[j - 1].startswith(indent + "#"):
            j -= 1
        if j == i or not re.match(rf"^{indent}# {key}\b", lines[j]):
            undocumented.append(f"values.yaml:{i + 1}: {key}")
    assert undocumented == []


def test_values_are_camel_case_and_strings_quoted() -> None:
    text = (CHART / "values.yaml").read_text()
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_]+):\s*(.*)$", line)
        if not m or line.lstrip().startswith("#"):
            continue
        key, value = m.groups()
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*", key), f"not camelCase: {key}"
        scalar = yaml.safe_load(value) if value else None
        if isinstance(scalar, str):
            assert value.startswith('"'), f"unquoted string: {line.strip()}"


# --- chart metadata, notes, packaging, image ------------------------------------------------


@cache
def chart() -> dict[str, Any]:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def render_notes(helm: Path, tmp_path: Path, values: dict | None) -> str:
    """NOTES.txt as `helm install` prints it (which needs a cluster): rendered by tpl in a
    throwaway copy of the chart, with the same values and release."""
    copy = tmp_path / "chart-copy"
    shutil.copytree(CHART, copy, dirs_exist_ok=True)
    shutil.copy(CHART / "templates" / "NOTES.txt", copy / "notes-under-test.txt")
    (copy / "templates" / "zz-notes.yaml").write_text(
        'notes: {{ tpl (.Files.Get "notes-under-test.txt") . | toJson }}\n'
    )
    cmd = [
        helm,
        "template",
        RELEASE,
        copy,
        "--namespace",
        NAMESPACE,
        "--show-only",
        "templates/zz-notes.yaml",
    ]
    out = run([*cmd, *values_args(tmp_path, values)]).stdout
    return yaml.safe_load(out)["notes"]


def test_notes_tell_how_to_create_the_secret_and_reach_metrics(helm: Path, tmp_path: Path) -> None:
    notes = render_notes(helm, tmp_path, None)
    assert f"kubectl --namespace {NAMESPACE} create secret generic lr-leadrouter-kafka" in notes
    assert "--from-literal=bootstrap-servers=" in notes
    assert "port-forward service/lr-leadrouter-metrics 9464" in notes
    assert "leadrouter topics apply" in notes
    assert "WARNING" not in notes
    notes = render_notes(
        helm, tmp_path, {"autoscaling": {"enabled": True}, "topicsJob": {"enabled": True}}
    )
    assert "WARNING: autoscaling on CPU utilization needs resources.requests.cpu" in notes
    assert "-- leadrouter topics apply" not in notes, "the hook Job creates the topics"


def test_notes_tell_how_the_config_reaches_the_workers(helm: Path, tmp_path: Path) -> None:
    workers = f"kubectl --namespace {NAMESPACE} exec deploy/lr-leadrouter -- leadrouter config"
    notes = render_notes(helm, tmp_path, PUBLISHED)
    assert "publishes the config" in notes and '"helm lr revision 1"' in notes
    assert "does not restart the pods" in notes
    assert f"{workers} history" in notes and f"{workers} publish --version <version>" in notes
    notes = render_notes(helm, tmp_path, {"config": {"publish": {"note": "CHG-7"}}, **PUBLISHED})
    assert '"CHG-7"' in notes
    for values, why in (
        (None, "topicsJob.enabled=false"),
        (FILES_ONLY["publish-disabled"], "config.publish.enabled=false"),
    ):
        notes = render_notes(helm, tmp_path, values)
        assert f"The config is not published by this release ({why})" in notes
        assert "a config change\n   rolls the pods" in notes and f"{workers} history" not in notes
        assert "LEADROUTER_CONFIG_SOURCE=files" in notes
        assert "WARNING" not in notes


def test_workers_run_their_files_only_when_the_chart_does_not_publish(
    helm: Path, tmp_path: Path
) -> None:
    for values, source in (
        (None, "files"),
        (FILES_ONLY["publish-disabled"], "files"),
        (PUBLISHED, None),
    ):
        env = env_of(worker(render(helm, tmp_path, values)))
        assert env.get("LEADROUTER_CONFIG_SOURCE", {}).get("value") == source


def test_chart_packages_with_its_rules_and_config(helm: Path, tmp_path: Path) -> None:
    run([helm, "package", CHART, "--destination", tmp_path])
    (package,) = tmp_path.glob("leadrouter-*.tgz")
    listing = run(["tar", "tzf", package]).stdout.split()
    assert "leadrouter/rules/leadrouter-alerts.yaml" in listing
    assert "leadrouter/values.schema.json" in listing
    assert {f"leadrouter/files/config/{name}" for name in repo_config()} <= set(listing)
    assert not [n for n in listing if n.endswith(".test.yaml")], "promtool tests stay out"


def dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_dockerfile_builds_the_image_the_chart_runs() -> None:
    final = dockerfile()
    final = final[max(i for i, (ins, _) in enumerate(final) if ins == "FROM") :]
    instr = {ins: rest for ins, rest in final}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert json.loads(instr["ENTRYPOINT"]) == ["leadrouter"]
    assert json.loads(instr["CMD"]) == ["worker"]
    uid = values["podSecurityContext"]["runAsUser"]
    assert instr["USER"] == f"{uid}:{values['podSecurityContext']['runAsGroup']}"
    assert instr["EXPOSE"] == str(values["metrics"]["port"])
    env = dict(re.findall(r"(\w+)=(\S+)", instr["ENV"]))
    assert env["LEADROUTER_METRICS_PORT"] == str(values["metrics"]["port"])
    assert env["LEADROUTER_CONFIG_DIR"] == "/etc/leadrouter"
    assert env["LEADROUTER_DATA_DIR"] == "/var/lib/leadrouter"
    ignored = (REPO / ".dockerignore").read_text().split()
    for needed in ("pyproject.toml", "constraints.txt", "workers/", "topics/", "config/"):
        assert f"!{needed}" in ignored, f".dockerignore leaves out {needed}"
