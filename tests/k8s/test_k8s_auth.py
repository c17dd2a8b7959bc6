"""Token authentication in the manifests: the RayCluster asks for it, every RayJob submitter carries the token.

Run: ``.venv/bin/python -m pytest tests/k8s/test_k8s_auth.py -q``
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

K8S = Path(__file__).resolve().parents[2] / "k8s"
CRDS = K8S.parent.parent / "shared" / "k8s-crds"
pytestmark = pytest.mark.skipif(not CRDS.is_dir(), reason=f"KubeRay CRD schemas not found at {CRDS}")


def _validator():
    spec = importlib.util.spec_from_file_location("k8s_validate_auth", K8S / "validate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


kv = _validator()


@pytest.fixture(scope="module")
def prod():
    return [o for k in kv.ENVIRONMENTS["prod"] for o in kv.render(K8S / k)]


def _kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def test_cluster_uses_token_auth_and_jobs_present_the_token(prod):
    (cluster,) = _kind(prod, "RayCluster")
    assert cluster["spec"]["authOptions"] == {"mode": "token", "secretName": "trinity-data-ray-auth"}
    jobs = _kind(prod, "RayJob")
    assert len(jobs) == 5
    for job in jobs:
        (c,) = job["spec"]["submitterPodTemplate"]["spec"]["containers"]
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "trinity-data-ray-auth",
                                                                      "key": "auth_token"}
    assert not kv.policy_errors(prod)


def test_missing_auth_is_reported(prod):
    objs = copy.deepcopy(prod)
    del _kind(objs, "RayCluster")[0]["spec"]["authOptions"]
    assert any("spec.authOptions needs mode: token" in e for e in kv.policy_errors(objs))


def test_a_submitter_without_the_token_is_reported(prod):
    objs = copy.deepcopy(prod)
    job = next(o for o in _kind(objs, "RayJob") if o["metadata"]["name"] == "trinity-tokenize")
    job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["env"] = [{"name": "RAY_AUTH_MODE", "value": "token"}]
    errs = kv.policy_errors(objs)
    assert [e for e in errs if "trinity-tokenize" in e and "RAY_AUTH_TOKEN must come from" in e]
    assert not [e for e in errs if "trinity-curate" in e]
