"""Deploys (scripts/deploy.sh, dry runs in a scratch repository), the listener's
service files and its lockfile."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from devstack.settings import ROOT
from gpu.modal_app import DeploymentSettings
from listener.settings import ListenerSettings

SECRETS = {
    "SUPABASE_ACCESS_TOKEN": "sbp_test",
    "SUPABASE_PROJECT_REF": "abcdefghijklmnopqrst",
    "SUPABASE_DB_PASSWORD": "db-password",
    "MODAL_TOKEN_ID": "ak-test",
    "MODAL_TOKEN_SECRET": "as-test",
    "UTTER_LISTENER_HOSTS": "listener-1.internal listener-2.internal",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository holding what scripts/deploy.sh reads, at one commit."""
    for path in [
        "scripts/deploy.sh",
        "deploy/environments/staging.env",
        "deploy/environments/production.env",
    ]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    git(tmp_path, "init", "--quiet")
    git(tmp_path, "add", ".")
    git(
        tmp_path,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "--quiet",
        "-m",
        "release",
    )
    return tmp_path


def deploy(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean_env = {
        k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("UTTER_MODAL")
    }
    return subprocess.run(
        ["bash", str(repo / "scripts" / "deploy.sh"), *args],
        env=clean_env | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_staging_dry_run_prints_every_step_in_order(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    result = deploy(repo, "staging", "--dry-run", **SECRETS)
    assert result.returncode == 0, result.stderr
    steps = [
        line.removeprefix("would run: ")
        for line in result.stdout.splitlines()
        if line.startswith("would run:")
    ]
    assert steps == [
        "node_modules/.bin/supabase link --project-ref abcdefghijklmnopqrst",
        "node_modules/.bin/supabase db push --linked --yes",
        ".venv/bin/modal deploy --env staging gpu/modal_app.py",
        *[
            f"ssh {host} git\\ -C\\ /opt/utter\\ fetch\\ --quiet\\ origin\\ \\&\\&\\ git\\ -C\\ /opt/utter\\ checkout\\ --quiet\\ --detach\\ {sha}\\ \\&\\&\\ /opt/utter/deploy/update-listener.sh"
            for host in ("listener-1.internal", "listener-2.internal")
        ],
        f"git tag --force staged/{sha} {sha}",
    ]
    assert "GPU L4, at most 1 containers, scale-down after 60s" in result.stdout
    assert "dry run, nothing was changed" in result.stdout
    assert git(repo, "tag", "--list") == "", "a dry run writes no tag"


def test_production_deploys_only_a_commit_that_passed_staging(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    refused = deploy(repo, "production", "--dry-run", **SECRETS)
    assert refused.returncode == 1
    assert refused.stdout.count("would run") == 0
    assert (
        f"deploy: commit {sha} has not passed staging (no tag staged/{sha}); "
        "run 'make deploy ENV=staging' from this commit first"
    ) in refused.stderr

    git(repo, "tag", f"staged/{sha}", sha)  # what a real staging deploy writes
    allowed = deploy(repo, "production", "--dry-run", **SECRETS)
    assert allowed.returncode == 0, allowed.stderr
    assert "would run: .venv/bin/modal deploy --env production gpu/modal_app.py" in allowed.stdout
    assert "GPU A10G, at most 4 containers, scale-down after 300s" in allowed.stdout
    assert "staged/" not in allowed.stdout.replace(f"staged/{sha}", ""), "production writes no tag"

    (repo / "next.txt").write_text("a later change\n")
    git(repo, "add", ".")
    git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "--quiet",
        "-m",
        "later",
    )
    later = deploy(repo, "production", "--dry-run", **SECRETS)
    assert later.returncode == 1 and "has not passed staging" in later.stderr


def test_deploys_refuse_a_dirty_tree_missing_secrets_and_unknown_targets(repo: Path) -> None:
    (repo / "scratch.txt").write_text("not committed\n")
    dirty = deploy(repo, "staging", "--dry-run", **SECRETS)
    assert dirty.returncode == 1
    assert (
        "the working tree has changes; commit them (or stash them) and deploy a commit"
        in dirty.stderr
    )
    (repo / "scratch.txt").unlink()

    partial = {
        k: v for k, v in SECRETS.items() if k not in ("SUPABASE_DB_PASSWORD", "MODAL_TOKEN_SECRET")
    }
    missing = deploy(repo, "staging", "--dry-run", **partial)
    assert missing.returncode == 1
    assert (
        "missing for staging: MODAL_TOKEN_SECRET SUPABASE_DB_PASSWORD (each is described in .env.example)"
        in missing.stderr
    )

    code_only = {k: v for k, v in partial.items() if not k.startswith("SUPABASE")} | {
        "MODAL_TOKEN_SECRET": "x"
    }
    rollback = deploy(repo, "staging", "--dry-run", "--skip-migrations", **code_only)
    assert rollback.returncode == 0, rollback.stderr
    assert "supabase" not in rollback.stdout.replace("deploy: migrations skipped", "")

    for bad in (["qa"], [], ["staging", "--force"]):
        usage = deploy(repo, *bad, **SECRETS)
        assert usage.returncode == 2
        assert (
            "usage: scripts/deploy.sh staging|production [--dry-run] [--skip-migrations]"
            in usage.stderr
        )


def env_file(name: str) -> dict[str, str]:
    lines = (ROOT / "deploy" / "environments" / f"{name}.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_each_environment_sets_the_modal_app_it_deploys() -> None:
    staging = DeploymentSettings.from_env(env_file("staging"))
    production = DeploymentSettings.from_env(env_file("production"))
    assert (staging.gpu, staging.max_containers, staging.scaledown_seconds) == ("L4", 1, 60)
    assert (production.gpu, production.max_containers, production.scaledown_seconds) == (
        "A10G",
        4,
        300,
    )
    assert env_file("staging")["MODAL_ENVIRONMENT"] == "staging"
    assert env_file("production")["MODAL_ENVIRONMENT"] == "production"


def test_the_lockfile_pins_what_the_tests_run_within_pyproject_ranges() -> None:
    pins = {
        name: pinned
        for line in (ROOT / "requirements" / "listener.lock").read_text().splitlines()
        if line and not line.startswith("#")
        for name, pinned in [line.split("==")]
    }
    for name, pinned in pins.items():
        assert version(name) == pinned, f"{name}: .venv has {version(name)}, the lock {pinned}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = [
        *project["dependencies"],
        *project["optional-dependencies"]["modal"],
        *project["optional-dependencies"]["sentry"],
    ]
    for spec in map(Requirement, direct):
        name = spec.name.lower().replace("_", "-")
        locked = {k.replace("_", "-"): v for k, v in pins.items()}
        assert name in locked, f"{spec} is not in the lock"
        assert locked[name] in spec.specifier, (
            f"the lock pins {name}=={locked[name]}, outside {spec}"
        )
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --requirement requirements/listener.lock" in dockerfile


def test_the_service_stops_gracefully_and_checks_health() -> None:
    text = (ROOT / "deploy" / "utter-listener.service").read_text()
    # Repeated keys (Environment=) are allowed in units: the last one wins here, and
    # the grace is read from the text.
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(text)
    service = unit["Service"]
    found = re.search(r"^Environment=UTTER_SHUTDOWN_GRACE_SECONDS=(\d+)$", text, re.MULTILINE)
    assert found is not None
    grace = float(found.group(1))
    # The listener waits the grace for running jobs, then up to grace + 10 s for the
    # stopped ones to hand back (listener/worker.py, Listener._drain).
    assert float(service["TimeoutStopSec"]) > 2 * grace + 10
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "always"
    assert "/healthz" in service["ExecStartPost"]
    assert ListenerSettings().shutdown_grace_seconds == grace
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"UTTER_SHUTDOWN_GRACE_SECONDS={grace:g}" in dockerfile
    assert re.search(r"HEALTHCHECK .*\n.*127\.0\.0\.1:9464/healthz", dockerfile)


def test_env_example_names_every_secret_and_production_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    deploy_script = (ROOT / "scripts" / "deploy.sh").read_text()
    required = set(re.findall(r"\b(?:SUPABASE|MODAL|UTTER)_[A-Z_]*[A-Z]\b", deploy_script))
    assert required - named == set()
    workflow = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    assert set(re.findall(r"^\s+([A-Z_]+): \$\{\{", workflow, re.MULTILINE)) - named == set()
    production = {
        f"UTTER_{name.upper()}"
        for name in (
            "engine",
            "storage",
            "supabase_url",
            "supabase_service_role_key",
            "metrics_port",
            "metrics_host",
            "sentry_dsn",
            "environment",
            "shutdown_grace_seconds",
        )
    } | {"UTTER_LISTENER_DATABASE_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_ENVIRONMENT"}
    assert production - named == set()
    for name in production - {
        "MODAL_TOKEN_ID",
        "MODAL_TOKEN_SECRET",
        "MODAL_ENVIRONMENT",
        "UTTER_LISTENER_DATABASE_URL",
    }:
        field = name.removeprefix("UTTER_").lower()
        assert field in ListenerSettings.model_fields, f"{name} is not a listener setting"
