# Shared by scripts/*: make .venv with the project installed (idempotent, quiet).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"

ensure_venv() {  # $1: extras, e.g. "" or "[test]"
    local extras="${1:-}"
    local stamp=".venv/.installed${extras}"
    if [ ! -x .venv/bin/python ]; then
        "$PY" -m venv .venv
    fi
    # Reinstall only when pyproject.toml changed since the last install.
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
        if ! .venv/bin/python -m pip install -q -e ".${extras}" >.venv/pip.log 2>&1; then
            cat .venv/pip.log >&2
            return 1
        fi
        touch "$stamp"
    fi
}

ensure_apt() {  # install Debian packages that provide the given commands: cmd:package ...
    local missing=() pair
    for pair in "$@"; do  # daemons (named) live in /usr/sbin, not on every user's PATH
        command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] \
            || missing+=("${pair##*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing ${missing[*]} with apt-get" >&2
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}
