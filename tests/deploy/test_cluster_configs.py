"""The cluster configs, checked without a cluster: the `ray up` configs (cluster/aws-gpu.yaml, cluster/gcp-gpu.yaml)
against Ray's own cluster-launcher schema and defaults, the KubeRay manifests (cluster/kuberay/) against the
Kubernetes schemas (kubernetes-validate, strict) and models of the KubeRay CRD fields, and, across every file, one
image name tagged with the package's version."""

from __future__ import annotations

import copy
import re
import shlex
import sys
from importlib.metadata import distribution
from pathlib import Path
from typing import Any, Literal

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from tuner._util import node_types
from tuner.spec import load
from tuner.sweep.placement import SKIP_ENV, fit_to_cluster

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
SHARED_FS_CONFIGS = ["cluster/aws-gpu.yaml", "cluster/gcp-gpu.yaml"]
BUCKET_CONFIGS = ["cluster/aws-gpu-s3.yaml", "cluster/gcp-gpu-gcs.yaml"]  # storage in a bucket: no shared mount
LAUNCHER_CONFIGS = SHARED_FS_CONFIGS + BUCKET_CONFIGS
KUBERAY = REPO / "cluster" / "kuberay"
K8S_VERSION = "1.33"  # the oldest Kubernetes the manifests target (EKS and GKE still serve it)
SWEEPS = "/mnt/sweeps"
IMAGE_REF = re.compile(r"^(?P<repo>[a-z0-9.-]+(?::\d+)?/[a-z0-9._/-]+):(?P<tag>[A-Za-z0-9._-]+)$")


def version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def header(path: Path) -> str:
    lines = path.read_text().splitlines()
    return "\n".join(line for line in lines[: next(i for i, x in enumerate(lines) if not x.startswith("#"))])


def ray_pin() -> str:
    pins = dict(line.split("==") for line in (REPO / "docker/constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    return pins["ray"]


# --- ray up: AWS and GCP ------------------------------------------------------------------------------------------

def launcher(path: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / path).read_text())


def worker_types(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_launcher_config_passes_rays_own_validation(path: str) -> None:
    """What `ray up` does before it contacts the cloud: merge the provider's defaults, then validate against
    ray/autoscaler/ray-schema.json and Ray's own cross-field checks."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(launcher(path)))


def test_launcher_validation_catches_a_misspelt_key() -> None:
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = launcher(LAUNCHER_CONFIGS[0])
    cfg["available_node_types"]["head"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        validate_config(prepare_config(cfg))


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_launcher_head_takes_no_trials(path: str) -> None:
    cfg = launcher(path)
    # The node type's resources override what `ray start` is told (RAY_OVERRIDE_RESOURCES): both must say zero.
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"] == {"CPU": 0, "GPU": 0}
    start = " ".join(cfg["head_start_ray_commands"])
    assert "--head" in start and "--num-cpus=0" in start and "--num-gpus=0" in start


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_launcher_gpu_workers_are_spot_and_autoscale(path: str) -> None:
    types = worker_types(launcher(path))
    assert types
    for name, t in types.items():
        assert t["resources"].get("GPU", 0) >= 1, name
        assert t.get("min_workers", 0) < t["max_workers"], name
        node = t["node_config"]
        spot = (node.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
                or node.get("scheduling", {}).get("provisioningModel") == "SPOT"
                or node.get("scheduling", {}).get("preemptible") is True)
        assert spot, f"{name} is on-demand"


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_launcher_nodes_run_one_cuda_image(path: str) -> None:
    """Head and workers run the same image: Ray refuses a worker whose Python differs from the head's (to the patch
    version), and the CPU image's Python comes from another base."""
    cfg = launcher(path)
    docker = cfg["docker"]
    refs = {docker["image"], docker.get("head_image", docker["image"]), docker.get("worker_image", docker["image"])}
    refs |= {t["docker"]["worker_image"] for t in worker_types(cfg).values() if "worker_image" in t.get("docker", {})}
    assert len(refs) == 1 and refs.pop().endswith("-cuda")


@pytest.mark.parametrize("path", SHARED_FS_CONFIGS)
def test_launcher_nodes_share_the_sweeps_mount(path: str) -> None:
    cfg = launcher(path)
    assert f"-v {SWEEPS}:{SWEEPS}" in cfg["docker"]["run_options"]
    mounts = [c for c in cfg["initialization_commands"] if "mount " in c and SWEEPS in c]
    assert mounts, "the host never mounts the shared storage"


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_launcher_token_reaches_every_node(path: str) -> None:
    cfg = launcher(path)
    assert cfg["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    assert "-e RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_launcher_heads_publish_their_node_types_for_the_placement_check(path: str) -> None:
    """GPU workers start at zero: the head publishes the config's node types once its Ray is up, so tuner's placement
    check counts the workers the autoscaler may add instead of refusing every sweep; nothing skips the check."""
    cfg = launcher(path)
    *start, publish = cfg["head_start_ray_commands"]
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in start[-1]
    assert publish == "python -m tuner cluster publish ~/ray_bootstrap_config.yaml"
    assert SKIP_ENV not in (REPO / path).read_text()


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_launcher_start_commands_run_rays_console_script(path: str) -> None:
    cfg = launcher(path)
    for command in cfg["head_start_ray_commands"][:-1] + cfg["worker_start_ray_commands"]:  # the last: publish
        assert shlex.split(command.split(";")[-1])[:1] == ["ray"], command
    assert "ray" in {ep.name for ep in distribution("ray").entry_points if ep.group == "console_scripts"}


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_launcher_header_gives_the_commands(path: str) -> None:
    text = header(REPO / path)
    storage = f"storage={SWEEPS}" if path in SHARED_FS_CONFIGS else "storage=s3://" if "aws" in path else "storage=gs://"
    for command in (f"ray up {path}", f"ray dashboard {path}", f"ray attach {path}", f"ray down {path}",
                    "ray get-auth-token --generate", "export RAY_AUTH_MODE=token",
                    "tuner submit jobs/quickstart.yaml --address http://127.0.0.1:8265", storage):
        assert command in text, command


@pytest.mark.parametrize("path", BUCKET_CONFIGS)
def test_bucket_launchers_reach_the_bucket_with_a_role_not_keys(path: str) -> None:
    """No shared mount, and every node has an identity the bucket admits: an instance profile (AWS) or a service
    account (GCP); no credentials in the config."""
    from tuner._util.storage import malformed

    cfg = launcher(path)
    assert not any(SWEEPS in option for option in cfg["docker"]["run_options"])
    assert not cfg["initialization_commands"]
    for name, node in cfg["available_node_types"].items():
        identity = node["node_config"].get("IamInstanceProfile") or node["node_config"].get("serviceAccounts")
        assert identity, f"{name} has no role to reach the bucket with"
    text = (REPO / path).read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in text and "private_key" not in text
    uri = re.search(r"storage=(\S+)", text).group(1)
    assert malformed(uri) is None, uri


# --- KubeRay: the ray.io/v1 fields we use, as KubeRay's CRDs and API reference define them -------------------------
# Each model lists every field of its type (KubeRay 1.6 to 1.7), so a misspelt or misplaced field fails; pod
# templates are core/v1 and are checked against the Kubernetes schema instead.

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ObjectMeta(Strict):
    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class AuthOptions(Strict):
    mode: Literal["disabled", "token"] = "token"
    secretName: str | None = None
    enableK8sTokenAuth: bool | None = None


class AutoscalerOptions(Strict):
    resources: dict[str, Any] | None = None
    image: str | None = None
    imagePullPolicy: str | None = None
    securityContext: dict[str, Any] | None = None
    idleTimeoutSeconds: int | None = None
    upscalingMode: Literal["Default", "Aggressive", "Conservative"] | None = None
    version: Literal["v1", "v2"] | None = None
    env: list[dict[str, Any]] | None = None
    envFrom: list[dict[str, Any]] | None = None
    volumeMounts: list[dict[str, Any]] | None = None
    command: list[str] | None = None
    args: list[str] | None = None


class HeadGroupSpec(Strict):
    template: dict[str, Any]
    headService: dict[str, Any] | None = None
    enableIngress: bool | None = None
    ingressOptions: dict[str, Any] | None = None
    resources: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    rayStartParams: dict[str, str] = {}
    serviceType: str | None = None


class WorkerGroupSpec(Strict):
    groupName: str
    suspend: bool | None = None
    replicas: int | None = None
    minReplicas: int = 0
    maxReplicas: int = 2**31 - 1
    idleTimeoutSeconds: int | None = None
    priority: int | None = None
    resources: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    rayStartParams: dict[str, str] = {}
    template: dict[str, Any]
    scaleStrategy: dict[str, Any] | None = None
    numOfHosts: int | None = None


class RayClusterSpec(Strict):
    headGroupSpec: HeadGroupSpec
    workerGroupSpecs: list[WorkerGroupSpec] = []
    rayVersion: str | None = None
    authOptions: AuthOptions | None = None
    enableInTreeAutoscaling: bool | None = None
    autoscalerOptions: AutoscalerOptions | None = None
    headServiceAnnotations: dict[str, str] | None = None
    gcsFaultToleranceOptions: dict[str, Any] | None = None
    historyServerOptions: dict[str, Any] | None = None
    networkPolicy: dict[str, Any] | None = None
    tlsOptions: dict[str, Any] | None = None
    upgradeStrategy: dict[str, Any] | None = None
    managedBy: str | None = None
    suspend: bool | None = None


class RayJobSpec(Strict):
    entrypoint: str | None = None
    rayClusterSpec: RayClusterSpec | None = None
    clusterSelector: dict[str, str] | None = None
    activeDeadlineSeconds: int | None = None
    backoffLimit: int | None = None
    submitterPodTemplate: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    submitterConfig: dict[str, Any] | None = None
    managedBy: str | None = None
    deletionStrategy: dict[str, Any] | None = None
    runtimeEnvYAML: str | None = None
    jobId: str | None = None
    submissionMode: Literal["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"] | None = None
    entrypointResources: str | None = None
    entrypointNumCpus: float | None = None
    entrypointNumGpus: float | None = None
    ttlSecondsAfterFinished: int | None = None
    shutdownAfterJobFinishes: bool | None = None
    suspend: bool | None = None

    @model_validator(mode="after")
    def one_cluster(self) -> RayJobSpec:
        if (self.rayClusterSpec is None) == (self.clusterSelector is None):
            raise ValueError("give one of rayClusterSpec (a cluster of its own) and clusterSelector (an existing one)")
        return self


class RayCronJobSpec(Strict):
    schedule: str
    jobTemplate: RayJobSpec
    suspend: bool | None = None


class RayCluster(Strict):
    apiVersion: Literal["ray.io/v1"]
    kind: Literal["RayCluster"]
    metadata: ObjectMeta
    spec: RayClusterSpec


class RayJob(Strict):
    apiVersion: Literal["ray.io/v1"]
    kind: Literal["RayJob"]
    metadata: ObjectMeta
    spec: RayJobSpec


class RayCronJob(Strict):
    apiVersion: Literal["ray.io/v1"]
    kind: Literal["RayCronJob"]
    metadata: ObjectMeta
    spec: RayCronJobSpec


CUSTOM: dict[str, type[BaseModel]] = {"RayCluster": RayCluster, "RayJob": RayJob, "RayCronJob": RayCronJob}
NATIVE = {("v1", "PersistentVolumeClaim")}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, doc) for p in sorted(KUBERAY.glob("*.yaml")) for doc in yaml.safe_load_all(p.read_text()) if doc]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def cluster_specs() -> list[dict[str, Any]]:
    """Every RayCluster spec: the standing cluster's and those RayJobs and RayCronJobs start."""
    return ([d["spec"] for d in of_kind("RayCluster")] + [d["spec"]["rayClusterSpec"] for d in of_kind("RayJob")]
            + [d["spec"]["jobTemplate"]["rayClusterSpec"] for d in of_kind("RayCronJob")])


def job_specs() -> list[dict[str, Any]]:
    return [d["spec"] for d in of_kind("RayJob")] + [d["spec"]["jobTemplate"] for d in of_kind("RayCronJob")]


def in_a_bucket(job: dict[str, Any]) -> bool:
    """A job whose sweep's storage is a bucket (rayjob-s3.yaml): its cluster shares no volume."""
    return "--set storage=s3://" in job["entrypoint"] or "--set storage=gs://" in job["entrypoint"]


def shared_volume_clusters() -> list[dict[str, Any]]:
    return [d["spec"] for d in of_kind("RayCluster")] + [j["rayClusterSpec"] for j in job_specs() if not in_a_bucket(j)]


def without_the_sweeps_volume(spec: dict[str, Any], account: str) -> dict[str, Any]:
    """A cluster spec as its bucket variant has it: no sweeps volume or mount, the pods running as ``account``."""
    out = copy.deepcopy(spec)
    for group in [out["headGroupSpec"], *out.get("workerGroupSpecs", [])]:
        pod = group["template"]["spec"]
        pod["volumes"] = [v for v in pod.get("volumes", []) if v["name"] != "sweeps"]
        for c in pod["containers"]:
            c["volumeMounts"] = [m for m in c.get("volumeMounts", []) if m["name"] != "sweeps"]
        group["template"]["spec"] = {"serviceAccountName": account, **pod}
    return out


def pod_templates() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for spec in cluster_specs():
        out.append(("head", spec["headGroupSpec"]["template"]))
        out += [(g["groupName"], g["template"]) for g in spec.get("workerGroupSpecs", [])]
    return out


def strict_k8s(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise AssertionError(f"{doc['kind']} {doc.get('metadata', {}).get('name')}: {e.message} at "
                             f"{'.'.join(map(str, e.path))}") from None


def test_kuberay_manifests_are_the_expected_kinds() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for _, d in manifests()}
    assert kinds == {("ray.io/v1", k) for k in CUSTOM} | NATIVE


def test_kuberay_custom_resources_use_only_crd_fields() -> None:
    for name, doc in manifests():
        if doc["kind"] in CUSTOM:
            try:
                CUSTOM[doc["kind"]].model_validate(doc)
            except ValidationError as e:
                raise AssertionError(f"{name}: {e}") from None


def test_kuberay_field_models_catch_a_misspelt_field() -> None:
    doc = copy.deepcopy(of_kind("RayCluster")[0])
    doc["spec"]["workerGroupSpecs"][0]["maxReplica"] = 4
    with pytest.raises(ValidationError, match="maxReplica"):
        RayCluster.model_validate(doc)


def test_kuberay_native_objects_are_valid_kubernetes() -> None:
    for _, doc in manifests():
        if (doc["apiVersion"], doc["kind"]) in NATIVE:
            strict_k8s(doc)


def test_kuberay_pod_templates_are_valid_kubernetes() -> None:
    for group, template in pod_templates():
        strict_k8s({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": group}, "template": template})


def test_kubernetes_validation_catches_a_misspelt_container_field() -> None:
    template = copy.deepcopy(pod_templates()[0][1])
    template["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(AssertionError, match="volumeMount"):
        strict_k8s({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": template})


def test_kuberay_head_takes_no_trials() -> None:
    for spec in cluster_specs():
        params = spec["headGroupSpec"]["rayStartParams"]
        assert params.get("num-cpus") == "0" and params.get("num-gpus") == "0"


def test_kuberay_gpu_group_autoscales() -> None:
    for spec in cluster_specs():
        assert spec["enableInTreeAutoscaling"] is True
        groups = spec["workerGroupSpecs"]
        assert groups
        for g in groups:
            assert g["minReplicas"] < g["maxReplicas"], g["groupName"]
            for c in g["template"]["spec"]["containers"]:
                assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1, g["groupName"]


def test_kuberay_jobs_run_on_the_standing_clusters_spec() -> None:
    """RayJob and RayCronJob start clusters of their own: the same spec as the RayCluster, not a drifting copy."""
    (standing,) = of_kind("RayCluster")
    assert len(job_specs()) == 3
    for spec in job_specs():
        if in_a_bucket(spec):  # the same but for the shared volume, and an identity the bucket admits
            account = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["serviceAccountName"]
            assert spec["rayClusterSpec"] == without_the_sweeps_volume(standing["spec"], account)
        else:
            assert spec["rayClusterSpec"] == standing["spec"]


def test_kuberay_ray_version_is_the_images_ray() -> None:
    assert {spec["rayVersion"] for spec in cluster_specs()} == {ray_pin()}


def test_kuberay_token_comes_from_the_shared_secret() -> None:
    secrets = {spec["authOptions"]["secretName"] for spec in cluster_specs() if spec["authOptions"]["mode"] == "token"}
    assert len(secrets) == 1 and len(cluster_specs()) == 4
    command = f"kubectl create secret generic {secrets.pop()} --from-file=auth_token=$HOME/.ray/auth_token"
    for name in ("raycluster.yaml", "rayjob.yaml", "rayjob-s3.yaml", "raycronjob.yaml"):
        assert command in header(KUBERAY / name), name


def worker_groups_as_ray_sees_them(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each worker group's node resources (rayStartParams, else the container's limits, as KubeRay derives them) and
    how many pods the autoscaler may add (maxReplicas)."""
    out = {}
    for g in spec["workerGroupSpecs"]:
        (container,) = g["template"]["spec"]["containers"]
        limits, params = container["resources"]["limits"], g["rayStartParams"]
        resources = {"CPU": float(params.get("num-cpus", limits["cpu"])),
                     "GPU": float(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))}
        out[g["groupName"]] = {"resources": resources, "max_workers": g["maxReplicas"]}
    return out


def head_node_types(spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[node_types.NodeType]:
    (head,) = spec["headGroupSpec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in head["env"]}
    assert SKIP_ENV not in env
    monkeypatch.setenv(node_types.ENV, env[node_types.ENV])
    return node_types.from_env()


def test_kuberay_heads_name_their_worker_groups_for_the_placement_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KubeRay head has no ray up config to publish: its environment names the worker groups (TUNER_NODE_TYPES,
    which its job drivers inherit), exactly as Ray will see their pods, and nothing skips the check."""
    for spec in cluster_specs():
        named = {t.name: {"resources": t.resources, "max_workers": t.max_workers}
                 for t in head_node_types(spec, monkeypatch)}
        assert named == worker_groups_as_ray_sees_them(spec)


def mounts(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> the volume mounted there (every container of the pod)."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    containers = template["spec"]["containers"]
    return {m["mountPath"]: volumes[m["name"]] for c in containers for m in c.get("volumeMounts", [])}


def test_kuberay_every_node_mounts_the_sweeps_claim() -> None:
    (pvc,) = of_kind("PersistentVolumeClaim")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    for spec in shared_volume_clusters():
        for group in [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]:
            claim = mounts(group["template"])[SWEEPS]["persistentVolumeClaim"]["claimName"]
            assert claim == pvc["metadata"]["name"], group.get("groupName", "head")


def sample_entrypoint(entrypoint: str) -> list[str]:
    """The entrypoint's words, with a sample where the shell would substitute a command's output."""
    return shlex.split(re.sub(r"\$\([^)]*\)", "20300101-0200", entrypoint))


def test_kuberay_jobs_run_a_shipped_spec_that_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m tuner run SPEC --set ...` on the head: SPEC is a file of jobs/ (the tuner-jobs ConfigMap, mounted
    on the head), storage is the shared mount, and the spec with those overrides passes tuner's own validation."""
    for spec in job_specs():
        words = sample_entrypoint(spec["entrypoint"])
        assert words[:4] == ["python", "-m", "tuner", "run"] and (REPO / "tuner" / "__main__.py").is_file()
        path, overrides = Path(words[4]), [w for flag, w in zip(words[4:], words[5:], strict=False) if flag == "--set"]
        head = spec["rayClusterSpec"]["headGroupSpec"]["template"]
        assert mounts(head)[str(path.parent)]["configMap"]["name"] == "tuner-jobs"
        assert f"storage={SWEEPS}" in overrides or in_a_bucket(spec)
        job = load(REPO / "jobs" / path.name, overrides)
        # Sent to the empty pool (the head offers no CPUs): the placement check counts the GPU pods it may add.
        fit_to_cluster(job, nodes=[{"memory": 1.0}], types=head_node_types(spec["rayClusterSpec"], monkeypatch))
        assert not spec.get("entrypointNumCpus"), "the driver would never be placed on a head that offers no CPUs"


def test_kuberay_headers_give_the_commands() -> None:
    assert "kubectl create configmap tuner-jobs --from-file=jobs/" in header(KUBERAY / "raycluster.yaml")
    assert "tuner submit jobs/quickstart.yaml --address http://127.0.0.1:8265" in header(KUBERAY / "raycluster.yaml")
    for path in sorted(KUBERAY.glob("*.yaml")):
        assert f"-f cluster/kuberay/{path.name}" in header(path), path.name  # in its `kubectl apply`


# --- every file ---------------------------------------------------------------------------------------------------

CLUSTER_README = "cluster/README.md"
DOCUMENTED = [*LAUNCHER_CONFIGS, "cluster/kuberay/raycluster.yaml", "docker/compose.yaml", CLUSTER_README]
CONFIGS = [*LAUNCHER_CONFIGS, *(f"cluster/kuberay/{p.name}" for p in sorted(KUBERAY.glob("*.yaml"))),
           "docker/compose.yaml", "docker/Dockerfile.cuda", "docker/Dockerfile.cpu"]


def documented_submits(path: str) -> list[list[str]]:
    """The words of each `tuner submit` command the file shows (comment markers and line continuations removed)."""
    text = re.sub(r"^#\s?", "", (REPO / path).read_text(), flags=re.M).replace("\\\n", " ")
    return [shlex.split(line.split("#")[0]) for line in map(str.strip, text.splitlines())
            if line.startswith("tuner submit ")]


@pytest.mark.parametrize("path", DOCUMENTED)
def test_documented_submit_commands_name_a_spec_that_validates_with_their_overrides(path: str) -> None:
    commands = documented_submits(path)
    assert commands
    for words in commands:
        overrides = [w for flag, w in zip(words, words[1:], strict=False) if flag == "--set"]
        storage = next(w for w in overrides if w.startswith("storage="))
        bucket = storage.startswith(("storage=s3://", "storage=gs://")) and path in [*BUCKET_CONFIGS, CLUSTER_README]
        assert (storage == f"storage={SWEEPS}" or bucket) and "--address" in words, words
        load(REPO / words[2], overrides)  # a bucket URI validates too (the bucket is checked when the sweep runs)


@pytest.mark.parametrize("path", CONFIGS)
def test_every_repo_path_a_config_names_exists(path: str) -> None:
    named = set(re.findall(r"(?<![\w/.])((?:jobs|cluster|docker)/[\w./-]*\w)", (REPO / path).read_text()))
    assert named or path.startswith("docker/Dockerfile")
    missing = sorted(n for n in named if not (REPO / n).exists())
    assert not missing, missing


# --- every file: one image, tagged with the package's version -----------------------------------------------------

def container_images(node: Any) -> set[str]:
    """The images of every container list anywhere in a manifest."""
    if isinstance(node, list):
        return set().union(*map(container_images, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {c["image"] for c in node.get("containers", [])}
    return found.union(*(container_images(v) for k, v in node.items() if k != "containers"))


def image_refs() -> dict[str, set[str]]:
    """file -> the image references it names: compose services, launcher docker sections, KubeRay pod templates,
    and the tags the Dockerfiles' build commands give."""
    compose = yaml.safe_load((REPO / "docker/compose.yaml").read_text())
    refs = {"docker/compose.yaml": {s["image"] for s in compose["services"].values()}}
    for path in LAUNCHER_CONFIGS:
        docker = launcher(path)["docker"]
        refs[path] = {docker[k] for k in ("image", "head_image", "worker_image") if k in docker}
    for name, doc in manifests():
        if doc["kind"] in CUSTOM:
            refs[f"cluster/kuberay/{name}"] = container_images(doc)
    for dockerfile in sorted((REPO / "docker").glob("Dockerfile.*")):
        refs[f"docker/{dockerfile.name}"] = set(re.findall(r"docker build .*-t (\S+) \.", header(dockerfile)))
    return refs


def test_every_file_names_one_image_tagged_with_the_package_version() -> None:
    refs = image_refs()
    assert all(refs.values()), [f for f, r in refs.items() if not r]
    parsed = {ref: IMAGE_REF.match(ref) for found in refs.values() for ref in found}
    assert all(parsed.values()), [ref for ref, m in parsed.items() if not m]
    assert len({m["repo"] for m in parsed.values() if m}) == 1, sorted(parsed)
    assert {m["tag"] for m in parsed.values() if m} == {f"{version()}-cuda", f"{version()}-cpu"}
    assert refs["docker/Dockerfile.cuda"] == {r for r in parsed if r.endswith("-cuda")}
    assert refs["docker/Dockerfile.cpu"] == {r for r in parsed if r.endswith("-cpu")}
