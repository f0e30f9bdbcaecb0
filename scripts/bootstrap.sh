#!/usr/bin/env bash
# Installs what the project needs on a Debian machine, once: the Debian packages
# behind every program in scripts/system-commands.txt, the Python virtualenv and the
# pinned npm tools; then checks that each of them is really there. Fast when
# everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

COMMANDS_FILE=scripts/system-commands.txt
PYTHON=${PYTHON:-python3}

# "program package where" for each program in $COMMANDS_FILE.
listed_programs() { grep -v '^[[:space:]]*#' "$COMMANDS_FILE" | awk 'NF == 3'; }

program_found() { # program where
  if [ "$2" = PATH ]; then command -v "$1" >/dev/null 2>&1; else [ -e "$2/$1" ]; fi
}

missing=()
while read -r program package where; do
  program_found "$program" "$where" || missing+=("$package")
done < <(listed_programs)
# Debian's python3 makes virtualenvs only with python3-venv beside it.
if command -v "$PYTHON" >/dev/null 2>&1 && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root (or sudo) to install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A package can install without the program we need (a renamed binary, a split
# package, a recommends we skipped): say so now, not three steps later.
absent=0
while read -r program package where; do
  if ! program_found "$program" "$where"; then
    [ "$where" = PATH ] && place="on PATH" || place="in $where"
    echo "bootstrap: $program not found $place; it comes from the Debian package $package" >&2
    absent=1
  fi
done < <(listed_programs)
((absent == 0)) || exit 1

node_wanted=$(sed -n 's/.*"node": *">=\([0-9]*\)".*/\1/p' package.json)
node_major=$(node --version | sed 's/^v\([0-9]*\).*/\1/')
if ((node_major < node_wanted)); then
  echo "bootstrap: node $(node --version) found; package.json needs Node $node_wanted or newer" >&2
  exit 1
fi

# See requirements/qwen-nodeps.txt: torchaudio's CUDA-linked extensions cannot load
# beside the CPU torch; without them it runs as the pure-Python package we need.
strip_torchaudio_extensions() {
  .venv/bin/python - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchaudio")
if spec and spec.origin:
    for library in (pathlib.Path(spec.origin).parent / "lib").glob("*.so"):
        library.unlink()
PY
}
# The stamp covers every file that decides what goes into .venv.
stamp=.venv/.bootstrap-$(cat pyproject.toml requirements/*.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating .venv from pyproject.toml"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  mkdir -p .local
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q -r requirements/torch-cpu.txt &&
         .venv/bin/python -m pip install -q -e '.[dev,modal,qwen]' &&
         .venv/bin/python -m pip install -q --no-deps -r requirements/qwen-nodeps.txt &&
         strip_torchaudio_extensions; } >.local/pip-install.log 2>&1; then
    cat .local/pip-install.log >&2
    echo "bootstrap: pip install failed (log above, also in .local/pip-install.log)" >&2
    exit 1
  fi
  rm -f .venv/.bootstrap-*
  touch "$stamp"
fi

npm_stamp=node_modules/.bootstrap-$(sha256sum package-lock.json | cut -c1-16)
if [ ! -f "$npm_stamp" ]; then
  echo "bootstrap: installing npm tools from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  touch "$npm_stamp"
fi

cli_wanted=$(node -p "require('./package.json').devDependencies.supabase")
cli_found=$(node_modules/.bin/supabase --version 2>/dev/null || echo none)
if [ "$cli_found" != "$cli_wanted" ]; then
  echo "bootstrap: Supabase CLI $cli_found in node_modules; package.json pins $cli_wanted (npm package supabase)" >&2
  exit 1
fi
