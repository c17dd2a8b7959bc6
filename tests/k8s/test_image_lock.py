"""The container image's Python packages come from full, hashed locks that match the project.

Run: ``.venv/bin/python -m pytest tests/k8s/test_image_lock.py -q``
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parents[2] / "k8s"
REPO = K8S.parent
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+?)(?: \\)?$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile / uv lock file."""
    out: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        m = _PIN.match(line)
        if m:
            current = _norm(m.group(1))
            assert current not in out, f"{path.name}: {current} pinned twice"
            out[current] = (m.group(2), [])
        elif line.strip().startswith("--hash=sha256:") and current:
            out[current][1].append(line.strip().split(":", 1)[1].rstrip(" \\"))
        elif line and not line.startswith((" ", "#", "--index-url")):
            raise AssertionError(f"{path.name}: unexpected line {line!r} (not an exact pin)")
    return out


def _requirement_names(lines) -> set[str]:
    names = set()
    for raw in lines:
        line = raw.split("#")[0].strip()
        if line:
            names.add(_norm(re.match(r"[A-Za-z0-9_.-]+", line).group(0)))
    return names


def test_every_locked_package_is_exact_and_hashed():
    for name in ("image-lock.txt", "image-build-lock.txt"):
        lock = _lock(K8S / name)
        assert lock, name
        for pkg, (version, hashes) in lock.items():
            assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), (name, pkg, version)
            assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), (name, pkg)
    runtime = _lock(K8S / "image-lock.txt")
    for heavy in ("vllm", "torch", "ray", "transformers", "datasets", "httpx", "tiktoken", "triton"):
        assert heavy in runtime, f"{heavy} floats: not in the lock"


def test_lock_inputs_are_the_project_dependencies_and_pins_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("s3", "hf", "gpu"):
        wanted += project["optional-dependencies"][extra]
    inputs = _requirement_names((K8S / "image-requirements.in").read_text().splitlines())
    assert _requirement_names(wanted) <= inputs, "pyproject gained a dependency: add it and regenerate the lock"
    runtime, build = _lock(K8S / "image-lock.txt"), _lock(K8S / "image-build-lock.txt")
    assert inputs <= set(runtime)
    for raw in (K8S / "image-constraints.txt").read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            got = runtime.get(_norm(name)) or build.get(_norm(name))
            assert got and got[0] == version, f"{name}: constraints say {version}, the lock has {got and got[0]}"
    ray_version = yaml.safe_load((K8S / "base" / "raycluster.yaml").read_text())["spec"]["rayVersion"]
    assert runtime["ray"][0] == ray_version


def test_dockerfile_installs_the_locks_and_ships_them():
    text = (K8S / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r /tmp/image-lock.txt" in text
    assert "--require-hashes --no-deps -r /tmp/build-lock.txt" in text
    ignore = (K8S / "Dockerfile.dockerignore").read_text()
    assert "!k8s/image-lock.txt" in ignore and "!k8s/image-build-lock.txt" in ignore
