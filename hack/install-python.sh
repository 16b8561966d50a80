#!/usr/bin/env bash
# Creates a virtualenv and installs the packages in editable mode. Serialised with a lock so
# parallel make invocations cannot corrupt it.
#   hack/install-python.sh PYTHON VENV SPEC...     e.g. .venv "./operator[test]" "./runtime[test]"
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
shift 2
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=("./operator[test]" "./runtime[test]")

"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "error: Python >= 3.11 is needed (found $("$python" --version 2>&1))" >&2; exit 1; }
"$python" -c 'import ensurepip, venv' 2>/dev/null \
  || { echo "error: $python cannot create virtualenvs (Debian: apt-get install python3-venv)" >&2; exit 1; }

mkdir -p "$venv"
exec 9>"$venv/.lock"
flock 9
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
editable=()
for spec in "${specs[@]}"; do editable+=(-e "$spec"); done
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${editable[@]}"
echo ">> python environment ready in $venv (${specs[*]})"
