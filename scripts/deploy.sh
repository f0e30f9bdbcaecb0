#!/usr/bin/env bash
# `make deploy ENV=staging|production` (docs/deploy.md): one commit, in this order,
#   1. the database: migrations with the pinned Supabase CLI (link, db push),
#   2. the GPU side: the Modal app into the environment's Modal environment,
#   3. the listeners: each host checks out the commit and restarts its service, one
#      host at a time, waiting for /healthz before the next,
# and for staging, 4. marks the commit as staged (tag staged/<sha>, pushed).
# Production deploys only a commit that carries that tag.
#
# --dry-run checks everything (the commit, the staging gate, the settings) and prints
# the commands instead of running them. --skip-migrations deploys code only (rollback
# to an earlier commit; migrations only move forward, see docs/deploy.md).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/deploy.sh staging|production [--dry-run] [--skip-migrations]" >&2
  exit 2
}
fail() {
  echo "deploy: $*" >&2
  exit 1
}

target=${1:-}
[ $# -gt 0 ] && shift
dry_run=0
skip_migrations=0
for arg in "$@"; do
  case $arg in
    --dry-run) dry_run=1 ;;
    --skip-migrations) skip_migrations=1 ;;
    *) usage ;;
  esac
done
[[ $target == staging || $target == production ]] || usage

run() {
  if ((dry_run)); then
    printf 'would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# What is deployed is a commit, never a working tree.
if [ -n "$(git status --porcelain --untracked-files=normal)" ]; then
  fail "the working tree has changes; commit them (or stash them) and deploy a commit"
fi
sha=$(git rev-parse HEAD)
staged_tag="staged/$sha"

if [ "$target" = production ]; then
  # Tags written by other machines' staging deploys (a read; no remote, nothing to fetch).
  if git remote get-url origin >/dev/null 2>&1; then
    git fetch --quiet origin "+refs/tags/staged/*:refs/tags/staged/*" ||
      fail "could not fetch the staged/* tags from origin to check that staging passed"
  fi
  git rev-parse --quiet --verify "refs/tags/$staged_tag" >/dev/null ||
    fail "commit $sha has not passed staging (no tag $staged_tag); run 'make deploy ENV=staging' from this commit first"
fi

# Non-secret settings of the environment, then the secrets it needs from outside.
set -a
# shellcheck source=/dev/null
. "deploy/environments/$target.env"
set +a
required=(MODAL_TOKEN_ID MODAL_TOKEN_SECRET UTTER_LISTENER_HOSTS)
((skip_migrations)) || required+=(SUPABASE_ACCESS_TOKEN SUPABASE_PROJECT_REF SUPABASE_DB_PASSWORD)
missing=()
for name in "${required[@]}"; do
  [ -n "${!name:-}" ] || missing+=("$name")
done
((${#missing[@]} == 0)) || fail "missing for $target: ${missing[*]} (each is described in .env.example)"

supabase=node_modules/.bin/supabase
modal=.venv/bin/modal
echo "deploy: $target from commit $sha"

if ((skip_migrations)); then
  echo "deploy: migrations skipped (--skip-migrations)"
else
  # The CLI reads SUPABASE_ACCESS_TOKEN and SUPABASE_DB_PASSWORD from the environment.
  run "$supabase" link --project-ref "$SUPABASE_PROJECT_REF"
  run "$supabase" db push --linked --yes
fi

# modal_app.py reads UTTER_MODAL_* (GPU type, max containers, scale-down window) here,
# at deploy time, from deploy/environments/$target.env.
echo "deploy: Modal app $UTTER_MODAL_APP in Modal environment $MODAL_ENVIRONMENT:" \
  "GPU $UTTER_MODAL_GPU, at most $UTTER_MODAL_MAX_CONTAINERS containers," \
  "scale-down after ${UTTER_MODAL_SCALEDOWN_SECONDS}s"
run "$modal" deploy --env "$MODAL_ENVIRONMENT" gpu/modal_app.py

# One host at a time: a host's jobs drain (SIGTERM, grace period) while the others work.
for host in $UTTER_LISTENER_HOSTS; do
  run ssh "$host" "git -C /opt/utter fetch --quiet origin && git -C /opt/utter checkout --quiet --detach $sha && /opt/utter/deploy/update-listener.sh"
done

if [ "$target" = staging ]; then
  run git tag --force "$staged_tag" "$sha"
  if git remote get-url origin >/dev/null 2>&1; then
    run git push --quiet --force origin "refs/tags/$staged_tag"
  fi
  echo "deploy: staging passed; production may now deploy $sha"
fi
if ((dry_run)); then echo "deploy: dry run, nothing was changed"; fi
echo "deploy: $target is at $sha"
