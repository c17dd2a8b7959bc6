"""Render and validate the KubeRay manifests offline, without a cluster.

    python k8s/validate.py                                        # every environment
    python k8s/validate.py k8s/overlays/prod k8s/overlays/prod/jobs   # one environment

The kustomizations given are rendered (``kubectl kustomize`` or ``kustomize build`` when one is on
PATH, else the small built-in renderer below), then every object is checked three ways:

1. Built-in kinds (ConfigMap, Namespace, ...) against the Kubernetes OpenAPI schemas shipped
   with the ``kubernetes-validate`` package, in strict mode (unknown fields are errors).
2. RayCluster / RayJob against the ``openAPIV3Schema`` of the KubeRay CRDs in
   ``../shared/k8s-crds/`` (or ``--crds DIR``) with ``jsonschema``. The API server prunes or,
   with ``kubectl``'s default ``--validate=strict``, rejects fields a structural schema does not
   declare; JSON Schema allows them. So every object schema that lists ``properties`` and has
   neither ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields`` gets
   ``additionalProperties: false``, which is exactly the server's rule. ``nullable`` becomes a
   ``null`` type. CEL rules (``x-kubernetes-validations``) are not evaluated; the ones in
   KubeRay v1.7.0 cover fields these manifests do not set (deletionStrategy, managedBy,
   gcsFaultToleranceOptions). ``metadata`` is checked against the core ``ObjectMeta`` schema.
3. Policy and KubeRay operator rules the schemas cannot express: requests and limits on every
   container (the autoscaler sidecar and the job submitter included), non-root pods, no
   privilege escalation, no privileged containers, no credentials as literal values, GPU
   groups tolerate and select GPU nodes, ``minReplicas <= replicas <= maxReplicas``, a RayJob's
   ``clusterSelector`` names a RayCluster in the same render, and its entrypoint is
   ``python -m jobs.<module> ...``.

The built-in renderer covers exactly the kustomize features used in ``k8s/``: ``resources``
(files and directories), ``namespace``, ``labels`` (metadata only), ``images``,
``configMapGenerator`` (``literals``, ``files``, ``behavior: create|replace|merge``, with
``generatorOptions.disableNameSuffixHash: true``) and ``patches`` (from ``path`` or inline
``patch``, optionally with a ``target`` of ``kind``/``name``): JSON 6902 operations
(``add``, ``replace``, ``remove``, ``test``) or strategic-merge documents whose lists hold
only scalars (no merge keys needed). It refuses any other key, so it never renders a
kustomization differently in silence; the tests compare it with ``kubectl kustomize`` where that
exists.
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml

K8S_DIR = Path(__file__).resolve().parent
REPO = K8S_DIR.parent
DEFAULT_CRDS = REPO.parent / "shared" / "k8s-crds"
KUBERNETES_VERSION = "1.32"  # the oldest minor this deployment targets
# An environment is the cluster kustomization plus its jobs kustomization; a RayJob's
# clusterSelector must name a RayCluster of the same environment.
ENVIRONMENTS = {
    "base": ("base", "jobs"),
    "dev": ("overlays/dev", "overlays/dev/jobs"),
    "prod": ("overlays/prod", "overlays/prod/jobs"),
}
KUSTOMIZATIONS = tuple(k for pair in ENVIRONMENTS.values() for k in pair)

_SECRETISH = re.compile(r"(SECRET|PASSWORD|TOKEN|CREDENTIAL|ACCESS_KEY|PRIVATE_KEY|API_KEY)", re.I)
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CPU_MEM = ("cpu", "memory")

Obj = dict[str, Any]


class ManifestError(Exception):
    """A kustomization cannot be rendered."""


# ----------------------------------------------------------------------------- rendering


def render(path: str | Path, *, engine: str = "auto") -> list[Obj]:
    """Render one kustomization directory into a list of objects.

    Args:
        path: the directory holding ``kustomization.yaml``.
        engine: ``"kubectl"``, ``"kustomize"``, ``"builtin"`` or ``"auto"`` (first available).
    """
    path = Path(path)
    if engine == "auto":
        engine = next((e for e in ("kubectl", "kustomize") if shutil.which(e)), "builtin")
    if engine == "builtin":
        return _Builtin().build(path)
    cmd = ["kubectl", "kustomize", str(path)] if engine == "kubectl" else ["kustomize", "build", str(path)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise ManifestError(f"{path}: {' '.join(cmd[:2])} failed: {res.stderr.strip()}")
    return [d for d in yaml.safe_load_all(res.stdout) if d]


class _Builtin:
    _KNOWN = {
        "apiVersion", "kind", "resources", "namespace", "labels", "images",
        "configMapGenerator", "generatorOptions", "patches",
    }

    def build(self, path: Path) -> list[Obj]:
        kfile = path / "kustomization.yaml"
        if not kfile.is_file():
            raise ManifestError(f"{path}: no kustomization.yaml")
        k = yaml.safe_load(kfile.read_text()) or {}
        unknown = set(k) - self._KNOWN
        if unknown:
            raise ManifestError(f"{kfile}: the built-in renderer does not support {sorted(unknown)}")
        objs: list[Obj] = []
        for res in k.get("resources", []):
            target = path / res
            if target.is_dir():
                objs += self.build(target)
            else:
                objs += [d for d in yaml.safe_load_all(target.read_text()) if d]
        hashless = (k.get("generatorOptions") or {}).get("disableNameSuffixHash", False)
        for gen in k.get("configMapGenerator", []):
            if not hashless and gen.get("behavior", "create") == "create":
                raise ManifestError(f"{kfile}: built-in renderer needs generatorOptions.disableNameSuffixHash")
            objs = self._generate(path, gen, objs, kfile)
        for patch in k.get("patches", []):
            if set(patch) - {"path", "patch", "target"}:
                raise ManifestError(f"{kfile}: built-in renderer does not support patch keys {sorted(patch)}")
            where = str(path / patch["path"]) if "path" in patch else f"{kfile} (inline patch)"
            ops = yaml.safe_load(patch["patch"] if "patch" in patch else (path / patch["path"]).read_text())
            if isinstance(ops, dict):  # strategic merge, identified by kind + name
                tgt = {"kind": ops["kind"], "name": ops["metadata"]["name"]}
                hits = [o for o in objs if all(_selects(o, key, val) for key, val in tgt.items())]
                if len(hits) != 1:
                    raise ManifestError(f"{where}: the patch matches {len(hits)} objects")
                _merge_patch(hits[0], ops, where=where)
                continue
            tgt = patch.get("target", {})
            hits = [o for o in objs if all(_selects(o, key, val) for key, val in tgt.items())]
            if not hits:
                raise ManifestError(f"{where}: the patch matches no object")
            for o in hits:
                for op in ops:
                    _json_patch(o, op, where=where)
        if "namespace" in k:
            for o in objs:
                if o["kind"] != "Namespace":
                    o["metadata"]["namespace"] = k["namespace"]
        for block in k.get("labels", []):
            if block.get("includeSelectors") or block.get("includeTemplates"):
                raise ManifestError(f"{kfile}: built-in renderer supports metadata labels only")
            for o in objs:
                o["metadata"].setdefault("labels", {}).update(block["pairs"])
        for img in k.get("images", []):
            for o in objs:
                _retag(o, img)
        return objs

    @staticmethod
    def _generate(path: Path, gen: Obj, objs: list[Obj], kfile: Path) -> list[Obj]:
        data: dict[str, str] = {}
        for lit in gen.get("literals", []):
            key, _, val = lit.partition("=")
            data[key] = val
        for f in gen.get("files", []):
            key, sep, rel = f.partition("=")
            fp = path / (rel if sep else f)
            data[key if sep else fp.name] = fp.read_text()
        behavior = gen.get("behavior", "create")
        same = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == gen["name"]]
        if behavior == "create":
            if same:
                raise ManifestError(f"{kfile}: ConfigMap {gen['name']} already exists")
            objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
        elif not same:
            raise ManifestError(f"{kfile}: {behavior} of ConfigMap {gen['name']} which does not exist")
        elif behavior == "replace":
            same[0]["data"] = data
        else:
            same[0].setdefault("data", {}).update(data)
        return objs


def _selects(obj: Obj, key: str, val: str) -> bool:
    if key == "kind":
        return obj.get("kind") == val
    if key == "name":
        return obj["metadata"].get("name") == val
    raise ManifestError(f"built-in renderer: unsupported patch target key {key!r}")


def _merge_patch(doc: Obj, patch: Obj, *, where: str) -> None:
    """Strategic merge without merge keys: maps merge, lists of scalars replace, null deletes.

    A list of mappings would need the kind's merge keys (containers by name...), which this
    renderer does not know, so such a patch is refused rather than applied differently.
    """
    for key, val in patch.items():
        if val is None:
            doc.pop(key, None)
        elif isinstance(val, dict) and isinstance(doc.get(key), dict):
            _merge_patch(doc[key], val, where=where)
        elif isinstance(val, list) and any(isinstance(v, dict) for v in val):
            raise ManifestError(f"{where}: {key}: lists of mappings need strategic-merge keys; use JSON 6902")
        else:
            doc[key] = copy.deepcopy(val)


def _json_patch(doc: Obj, op: Obj, *, where: str) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
    parent: Any = doc
    for p in parts[:-1]:
        try:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        except (KeyError, IndexError, ValueError) as e:
            raise ManifestError(f"{where}: path {op['path']} does not exist") from e
    last = parts[-1]
    key: Any = int(last) if isinstance(parent, list) and last != "-" else last
    kind = op["op"]
    if kind == "test":
        if parent[key] != op["value"]:
            raise ManifestError(f"{where}: test failed at {op['path']}: {parent[key]!r} != {op['value']!r}")
    elif kind == "remove":
        del parent[key]
    elif kind == "replace":
        if (isinstance(parent, dict) and key not in parent) or (isinstance(parent, list) and key >= len(parent)):
            raise ManifestError(f"{where}: replace of missing {op['path']}")
        parent[key] = copy.deepcopy(op["value"])
    elif kind == "add":
        if isinstance(parent, list):
            parent.insert(len(parent) if key == "-" else key, copy.deepcopy(op["value"]))
        else:
            parent[key] = copy.deepcopy(op["value"])
    else:
        raise ManifestError(f"{where}: unsupported JSON patch op {kind!r}")


def _retag(node: Any, img: Obj) -> None:
    if isinstance(node, dict):
        for field in ("containers", "initContainers"):
            for c in node.get(field, []) or []:
                if isinstance(c, dict) and isinstance(c.get("image"), str):
                    name, _, tag = c["image"].partition(":")
                    if name == img["name"]:
                        c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}"
        for v in node.values():
            _retag(v, img)
    elif isinstance(node, list):
        for v in node:
            _retag(v, img)


# ----------------------------------------------------------------------------- schemas


def _strictify(schema: Any) -> Any:
    """OpenAPI v3 structural schema -> JSON Schema with the API server's unknown-field rule."""
    if isinstance(schema, list):
        return [_strictify(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strictify(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        out.pop("nullable")
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=4)
def crd_validators(crd_dir: str) -> dict[tuple[str, str], Any]:
    """``(apiVersion, kind) -> jsonschema validator`` for every CRD version in ``crd_dir``."""
    import jsonschema

    found: dict[tuple[str, str], Any] = {}
    for f in sorted(Path(crd_dir).glob("*.yaml")):
        crd = yaml.load(f.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for ver in crd["spec"]["versions"]:
            schema = _strictify(ver["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"type": "object"}  # checked as ObjectMeta below
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
            found[(f"{group}/{ver['name']}", kind)] = cls(schema)
    if not found:
        raise ManifestError(f"no CRD schemas in {crd_dir}")
    return found


def _core_errors(obj: Obj) -> list[str]:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except SchemaNotFoundError:
        return [f"no Kubernetes {KUBERNETES_VERSION} schema for {obj.get('apiVersion')}/{obj.get('kind')}"]
    except ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        return [f"{where}: {e.message}"]
    return []


def schema_errors(obj: Obj, crd_dir: str | Path = DEFAULT_CRDS) -> list[str]:
    """Schema violations of one object, each as ``path: message``; empty when valid."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    validators = crd_validators(str(crd_dir))
    if key not in validators:
        return _core_errors(obj)
    errs = [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in sorted(validators[key].iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
    # ObjectMeta of a custom resource follows the same rules as any built-in object's.
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata", {})}
    errs += [e for e in _core_errors(probe) if e.startswith("metadata")]
    return errs


# ----------------------------------------------------------------------------- policy


def _pod_templates(obj: Obj) -> Iterable[tuple[str, Obj]]:
    spec = obj.get("spec", {})
    if obj["kind"] == "RayCluster":
        yield "spec/headGroupSpec/template", spec.get("headGroupSpec", {}).get("template", {})
        for i, g in enumerate(spec.get("workerGroupSpecs", [])):
            yield f"spec/workerGroupSpecs/{i}({g.get('groupName')})/template", g.get("template", {})
    elif obj["kind"] == "RayJob":
        if "submitterPodTemplate" in spec:
            yield "spec/submitterPodTemplate", spec["submitterPodTemplate"]
        if "rayClusterSpec" in spec:
            sub = {"kind": "RayCluster", "spec": spec["rayClusterSpec"]}
            for where, tpl in _pod_templates(sub):
                yield "spec/rayClusterSpec/" + where.removeprefix("spec/"), tpl


def _container_errors(where: str, c: Obj, pod_sc: Obj) -> list[str]:
    errs = []
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        missing = [r for r in _CPU_MEM if r not in (res.get(kind) or {})]
        if missing:
            errs.append(f"{where}: resources.{kind} lacks {', '.join(missing)}")
    sc = c.get("securityContext") or {}
    if sc.get("allowPrivilegeEscalation") is not False:
        errs.append(f"{where}: securityContext.allowPrivilegeEscalation must be false")
    if sc.get("privileged"):
        errs.append(f"{where}: privileged containers are not allowed")
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if non_root is not True or user in (None, 0):
        errs.append(f"{where}: must run as non-root (runAsNonRoot: true and a runAsUser other than 0)")
    for env in c.get("env", []) or []:
        if "value" in env and _SECRETISH.search(env["name"]):
            errs.append(f"{where}: env {env['name']} holds a literal value; use valueFrom.secretKeyRef")
    gpu = (res.get("limits") or {}).get("nvidia.com/gpu")
    if (res.get("requests") or {}).get("nvidia.com/gpu", gpu) != gpu:
        errs.append(f"{where}: nvidia.com/gpu requests must equal limits")
    return errs


def policy_errors(objs: list[Obj]) -> list[str]:
    """Rules beyond the schemas; each error names the object and the path."""
    errs: list[str] = []
    clusters = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs if o.get("kind") == "RayCluster"}
    auth_secret = {(o["metadata"].get("namespace"), o["metadata"]["name"]):
                   ((o.get("spec") or {}).get("authOptions") or {}).get("secretName")
                   for o in objs if o.get("kind") == "RayCluster"}
    for o in objs:
        kind, name = o.get("kind"), o.get("metadata", {}).get("name", "?")
        tag = f"{kind}/{name}"
        if kind == "Secret" and (o.get("data") or o.get("stringData")):
            errs.append(f"{tag}: Secrets with values must not live in manifests; create them out of band")
        if kind not in ("RayCluster", "RayJob"):
            continue
        if not _DNS1035.match(name) or len(name) > 63:
            errs.append(f"{tag}: metadata.name must be a DNS-1035 label")
        for where, tpl in _pod_templates(o):
            pod = tpl.get("spec", {})
            pod_sc = pod.get("securityContext") or {}
            if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
                errs.append(f"{tag}: {where}: host namespaces are not allowed")
            has_gpu = False
            for i, c in enumerate(pod.get("containers", []) + pod.get("initContainers", [])):
                errs += [f"{tag}: {e}" for e in _container_errors(f"{where}/containers/{i}({c.get('name')})", c, pod_sc)]
                has_gpu |= "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})
            if has_gpu:
                if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
                    errs.append(f"{tag}: {where}: GPU pods need a nvidia.com/gpu toleration")
                if not pod.get("nodeSelector") and not pod.get("affinity"):
                    errs.append(f"{tag}: {where}: GPU pods need a nodeSelector or affinity")
        spec = o.get("spec", {})
        if kind == "RayCluster":
            auth = spec.get("authOptions") or {}
            if auth.get("mode") != "token" or not auth.get("secretName"):
                errs.append(f"{tag}: spec.authOptions needs mode: token and a secretName (Ray 2.60 clusters use "
                            "token auth; the RayJob submitters read the same Secret)")
            auto = spec.get("autoscalerOptions")
            if spec.get("enableInTreeAutoscaling"):
                if auto is None:
                    errs.append(f"{tag}: autoscaling is on but autoscalerOptions (resources) is unset")
                else:
                    sc = auto.get("securityContext") or {}
                    errs += [f"{tag}: {e}" for e in _container_errors("spec/autoscalerOptions", auto, sc)]
            for i, g in enumerate(spec.get("workerGroupSpecs", [])):
                lo, hi = g.get("minReplicas", 0), g.get("maxReplicas", 0)
                rep = g.get("replicas", lo)
                if not lo <= rep <= hi:
                    errs.append(f"{tag}: workerGroupSpecs/{i}({g.get('groupName')}): need minReplicas <= replicas <= maxReplicas, got {lo} <= {rep} <= {hi}")
            for g in [spec.get("headGroupSpec", {}), *spec.get("workerGroupSpecs", [])]:
                params = g.get("rayStartParams") or {}
                if "labels" in params:
                    errs.append(f"{tag}: rayStartParams.labels is not supported by KubeRay; use the group's labels")
                if g.get("resources") and {"num-cpus", "num-gpus", "memory", "resources"} & set(params):
                    errs.append(f"{tag}: resources set in both rayStartParams and resources")
        else:
            sel = (spec.get("clusterSelector") or {}).get("ray.io/cluster")
            if sel is None and "rayClusterSpec" not in spec:
                errs.append(f"{tag}: one of rayClusterSpec or clusterSelector[ray.io/cluster] must be set")
            ns = o["metadata"].get("namespace")
            if sel is not None and (ns, sel) not in clusters:
                errs.append(f"{tag}: clusterSelector names RayCluster {sel!r}, which this render does not define"
                            + (f" in namespace {ns!r}" if ns else ""))
            if "submitterPodTemplate" not in spec and spec.get("submissionMode", "K8sJobMode") == "K8sJobMode":
                errs.append(f"{tag}: set submitterPodTemplate so the submitter pod gets limits and a securityContext")
            secret = auth_secret.get((ns, sel)) if sel is not None else None
            if secret and "submitterPodTemplate" in spec:
                errs += [f"{tag}: {e}" for e in _submitter_token_errors(spec["submitterPodTemplate"], secret)]
            try:
                entry_module(spec.get("entrypoint", ""))
            except ValueError as e:
                errs.append(f"{tag}: spec.entrypoint: {e}")
    return errs


def _submitter_token_errors(tpl: Obj, secret: str) -> list[str]:
    """The job submitter talks to a token-auth cluster: it needs RAY_AUTH_TOKEN from the cluster's Secret."""
    errs = []
    for i, c in enumerate((tpl.get("spec") or {}).get("containers", [])):
        env = {e.get("name"): e for e in c.get("env", []) or []}
        ref = ((env.get("RAY_AUTH_TOKEN") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        if ref.get("name") != secret or ref.get("key") != "auth_token":
            errs.append(f"submitterPodTemplate/containers/{i}({c.get('name')}): env RAY_AUTH_TOKEN must come from "
                        f"secretKeyRef {{name: {secret}, key: auth_token}}, or the submitter cannot reach the cluster")
        if (env.get("RAY_AUTH_MODE") or {}).get("value") != "token":
            errs.append(f"submitterPodTemplate/containers/{i}({c.get('name')}): set env RAY_AUTH_MODE=token")
    return errs


def entry_module(entrypoint: str) -> tuple[str, list[str]]:
    """``"python -m jobs.curate --config X"`` -> ``("jobs.curate", ["--config", "X"])``."""
    argv = shlex.split(entrypoint)
    if len(argv) < 3 or argv[0] not in ("python", "python3") or argv[1] != "-m" or not argv[2].startswith("jobs."):
        raise ValueError(f"expected 'python -m jobs.<module> ...', got {entrypoint!r}")
    return argv[2], argv[3:]


def validate(objs: list[Obj], crd_dir: str | Path = DEFAULT_CRDS) -> list[str]:
    """Every schema and policy error of a rendered kustomization (empty when clean)."""
    errs = []
    for o in objs:
        tag = f"{o.get('kind')}/{o.get('metadata', {}).get('name', '?')}"
        errs += [f"{tag}: {e}" for e in schema_errors(o, crd_dir)]
    return errs + policy_errors(objs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*",
                    help="kustomization directories validated together as one environment "
                         "(default: each of base+jobs, dev, prod in turn)")
    ap.add_argument("--crds", default=str(DEFAULT_CRDS), help="folder of KubeRay CRD YAML files")
    ap.add_argument("--engine", default="auto", choices=["auto", "kubectl", "kustomize", "builtin"])
    args = ap.parse_args(argv)
    envs = {" + ".join(args.paths): args.paths} if args.paths else {
        name: [str(K8S_DIR / k) for k in dirs] for name, dirs in ENVIRONMENTS.items()}
    bad = 0
    for name, paths in envs.items():
        try:
            objs = [o for p in paths for o in render(p, engine=args.engine)]
            errs = validate(objs, args.crds)
        except ManifestError as e:
            objs, errs = [], [str(e)]
        bad += bool(errs)
        print(f"{name}: {len(objs)} objects, {'OK' if not errs else f'{len(errs)} errors'}")
        for e in errs:
            print(f"  {e}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
