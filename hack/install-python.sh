#!/usr/bin/env bash
# Creates the repository's virtualenv and installs both packages in editable mode with their
# test extras. Serialised with a lock so parallel make invocations cannot corrupt the venv.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "error: Python >= 3.11 is needed (found $("$python" --version 2>&1))" >&2; exit 1; }

mkdir -p "$venv"
exec 9>"$venv/.lock"
flock 9
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -e "./operator[test]" -e "./runtime[test]"
echo ">> python environment ready in $venv"
