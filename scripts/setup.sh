#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install atlas_bayes (editable) with its test extras.
# Idempotent: re-running only refreshes the install.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    for cand in "${PYTHON:-}" python3.13 python3.12 python3; do
        [ -n "$cand" ] || continue
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$cand"; return 0
        fi
    done
    # pyenv installs that are not on the global path
    for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
        if [ -x "$cand" ]; then echo "$cand"; return 0; fi
    done
    return 1
}

if [ ! -x .venv/bin/python ]; then
    py=$(find_python) || { echo "atlas_bayes needs Python >= 3.12; set PYTHON=/path/to/python3.12" >&2; exit 1; }
    echo "creating .venv with $py" >&2
    "$py" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet -e ".[test]"
