"""The images and the compose cluster, checked without a Docker engine: what the Dockerfiles copy exists and is not
ignored, the bases are the official images, the package is installed from pyproject.toml (its pins, not a list of
our own), the commands are console scripts that tuner or Ray install, and the compose cluster's nodes share one
volume at one path behind a head that takes no trials."""

from __future__ import annotations

import json
import re
import shlex
import sys
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = ["docker/Dockerfile.cuda", "docker/Dockerfile.cpu"]
COMPOSE = REPO / "docker" / "compose.yaml"
SWEEPS = "/mnt/sweeps"
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_BASE = re.compile(r"^pytorch/pytorch:(?P<torch>\d+\.\d+\.\d+)-cuda\d+\.\d+-cudnn\d+-runtime$")
PIP_OPTIONS_WITH_VALUE = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url",
                          "-f", "--find-links"}


def project() -> dict[str, Any]:
    return dict(tomllib.loads((REPO / "pyproject.toml").read_text())["project"])


def requirements() -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, project()["dependencies"])}


def console_scripts() -> set[str]:
    """What `tuner` and Ray put on PATH."""
    ray = {ep.name for ep in distribution("ray").entry_points if ep.group == "console_scripts"}
    return set(project()["scripts"]) | ray


def instructions(path: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in (REPO / path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        op, _, args = (pending + line).partition(" ")
        out.append((op.upper(), " ".join(args.split())))
        pending = ""
    return out


def copies(path: str) -> list[tuple[list[str], str, str]]:
    """(sources, destination, workdir at that point) of each COPY from the build context."""
    out, workdir = [], "/"
    for op, args in instructions(path):
        if op == "WORKDIR":
            workdir = args
        elif op == "COPY":
            words = shlex.split(args)
            if any(w.startswith("--from") for w in words):
                continue
            words = [w for w in words if not w.startswith("--")]
            out.append((words[:-1], words[-1], workdir))
    return out


def pip_installs(path: str) -> list[tuple[dict[str, list[str]], list[str], str]]:
    """(options, positional arguments, workdir) of each `pip install` in the RUN instructions."""
    out, workdir = [], "/"
    for op, args in instructions(path):
        if op == "WORKDIR":
            workdir = args
        if op != "RUN":
            continue
        for command in args.split("&&"):
            words = shlex.split(command)
            if words[:2] != ["pip", "install"]:
                continue
            options: dict[str, list[str]] = {}
            positional, rest = [], iter(words[2:])
            for w in rest:
                if w in PIP_OPTIONS_WITH_VALUE:
                    options.setdefault(w, []).append(next(rest))
                elif w.startswith("-"):
                    options.setdefault(w, [])
                else:
                    positional.append(w)
            out.append((options, positional, workdir))
    return out


def dockerignore() -> list[str]:
    return [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(out)


def ignored(rel: str) -> bool:
    """Docker's .dockerignore rule, for the patterns we use (no `!`): a path is out if it or a folder above it
    matches a pattern, relative to the context's root."""
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(pattern_regex(p.strip("/")).fullmatch(prefix) for p in dockerignore() for prefix in prefixes)


def base(path: str) -> str:
    (image,) = [args for op, args in instructions(path) if op == "FROM"]
    return image


# --- Dockerfiles ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DOCKERFILES)
def test_dockerfile_copies_only_what_exists_in_the_repo(path: str) -> None:
    sources = [s for srcs, _, _ in copies(path) for s in srcs]
    assert sources
    missing = [s for s in sources if not (REPO / s).exists()]
    assert not missing, missing


@pytest.mark.parametrize("path", DOCKERFILES)
def test_dockerfile_copies_nothing_the_dockerignore_drops(path: str) -> None:
    dropped = [s for srcs, _, _ in copies(path) for s in srcs if ignored(s)]
    assert not dropped, dropped


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    for rel in (".git", ".venv/bin/python", "sweeps/quickstart/summary.json", "tuner/__pycache__/spec.cpython-311.pyc",
                "tuner.egg-info/PKG-INFO", ".pytest_cache", ".mypy_cache", ".ruff_cache", "jobs/sweeps/x.json"):
        assert ignored(rel), rel
    for rel in ("pyproject.toml", "README.md", "tuner/spec.py", "docker/constraints.txt"):
        assert not ignored(rel), rel


def test_cuda_image_is_the_official_pytorch_runtime_with_a_torch_pyproject_allows() -> None:
    match = CUDA_BASE.match(base("docker/Dockerfile.cuda"))
    assert match, base("docker/Dockerfile.cuda")
    assert match["torch"] in requirements()["torch"].specifier


def test_cpu_image_is_the_official_python_slim_image_pyproject_allows() -> None:
    match = re.fullmatch(r"python:(?P<python>3\.\d+)-slim", base("docker/Dockerfile.cpu"))
    assert match, base("docker/Dockerfile.cpu")
    assert f"{match['python']}.0" in Requirement(f"python{project()['requires-python']}").specifier


def test_cpu_image_takes_the_cuda_images_torch_from_the_cpu_index() -> None:
    torch = CUDA_BASE.match(base("docker/Dockerfile.cuda"))
    assert torch
    [(options, positional, _)] = [i for i in pip_installs("docker/Dockerfile.cpu") if i[1] != ["."]]
    assert positional == [f"torch=={torch['torch']}"]
    assert options["--index-url"] == [CPU_TORCH_INDEX]


@pytest.mark.parametrize("path", DOCKERFILES)
def test_dockerfile_installs_the_package_from_pyproject(path: str) -> None:
    """`pip install .` where pyproject.toml, README.md and tuner/ were copied, under docker/constraints.txt: the
    dependencies and their ranges are pyproject's, never a list written here."""
    installs = pip_installs(path)
    package = [(options, workdir) for options, positional, workdir in installs if positional == ["."]]
    assert len(package) == 1, installs
    options, workdir = package[0]
    copied = {(src.rstrip("/"), dest, wd) for srcs, dest, wd in copies(path) for src in srcs}
    for needed in ("pyproject.toml", "README.md", "docker/constraints.txt"):
        assert (needed, "./", workdir) in copied, needed
    assert ("tuner", "tuner/", workdir) in copied
    assert "constraints.txt" in options["-c"]
    assert "-r" not in options and "--requirement" not in options
    others = [positional for _, positional, _ in installs if positional != ["."]]
    assert all(len(p) == 1 and p[0].startswith("torch==") for p in others), others


def test_constraints_pin_only_pyproject_dependencies_within_their_ranges() -> None:
    deps = requirements()
    pins = [Requirement(line) for line in (REPO / "docker/constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins
    for pin in pins:
        (spec,) = pin.specifier
        assert spec.operator == "==", pin
        assert canonicalize_name(pin.name) in deps, pin
        assert spec.version in deps[canonicalize_name(pin.name)].specifier, pin


@pytest.mark.parametrize("path", DOCKERFILES)
def test_dockerfile_runs_an_installed_console_script_and_sets_no_entrypoint(path: str) -> None:
    """No ENTRYPOINT: `ray up` starts its containers as `docker run IMAGE bash`, which an entrypoint would swallow."""
    ops = instructions(path)
    assert not [a for op, a in ops if op == "ENTRYPOINT"]
    (cmd,) = [json.loads(a) for op, a in ops if op == "CMD"]
    assert cmd[0] in console_scripts()


@pytest.mark.parametrize("path", DOCKERFILES)
def test_dockerfile_header_builds_from_the_repo_root(path: str) -> None:
    assert re.search(rf"docker build -f {re.escape(path)} -t \S+ \.$", (REPO / path).read_text(), re.M)


# --- compose ------------------------------------------------------------------------------------------------------

def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def command(service: str) -> list[str]:
    return shlex.split(compose()["services"][service]["command"])


def test_compose_has_a_head_and_two_workers() -> None:
    assert set(compose()["services"]) == {"head", "worker-1", "worker-2"}


def test_compose_builds_the_cpu_image_from_the_repo_root() -> None:
    for name, service in compose()["services"].items():
        assert service["image"].endswith("-cpu"), name
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert context == REPO, name
        assert (context / service["build"]["dockerfile"]).name == "Dockerfile.cpu", name
        assert (context / service["build"]["dockerfile"]).is_file(), name


def test_compose_head_takes_no_trials() -> None:
    words = command("head")
    assert words[:2] == ["ray", "start"]
    assert {"--head", "--num-cpus=0", "--num-gpus=0", "--block"} <= set(words)


def test_compose_workers_join_the_head() -> None:
    for name in ("worker-1", "worker-2"):
        words = command(name)
        assert words[:2] == ["ray", "start"] and {"--address=head:6379", "--block"} <= set(words), name


def test_compose_commands_are_installed_console_scripts() -> None:
    for name in compose()["services"]:
        assert command(name)[0] in console_scripts(), name


def test_compose_nodes_share_one_volume_at_one_path() -> None:
    cfg = compose()
    mounts = {name: [v for v in s["volumes"] if v.endswith(f":{SWEEPS}")] for name, s in cfg["services"].items()}
    assert all(len(m) == 1 for m in mounts.values()), mounts
    sources = {m[0].split(":")[0] for m in mounts.values()}
    assert len(sources) == 1 and sources <= set(cfg["volumes"]), sources


def test_compose_publishes_the_dashboard_on_loopback_only() -> None:
    services = compose()["services"]
    assert services["head"]["ports"] == ["127.0.0.1:8265:8265"]
    assert not any("ports" in s for name, s in services.items() if name != "head")


def test_compose_nodes_share_the_callers_token() -> None:
    cfg = compose()
    for name, service in cfg["services"].items():
        (secret,) = service["secrets"]
        assert service["environment"] == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": f"/run/secrets/{secret}"}
        assert cfg["secrets"][secret]["file"] == "${HOME}/.ray/auth_token", name


def test_compose_header_gives_the_commands() -> None:
    text = COMPOSE.read_text()
    for line in ("ray get-auth-token --generate", "docker compose -f docker/compose.yaml up",
                 "export RAY_AUTH_MODE=token", f"--address http://127.0.0.1:8265 --set storage={SWEEPS}"):
        assert line in text, line
