#!/usr/bin/env bash
# Set up everything cake_mini needs on a fresh machine, then run the main job or the tests.
#
#   bash dev.sh run [cake-mini run args]   # default: `cake-mini run digits` (embedded data, minutes on CPU)
#   bash dev.sh test                       # unit tests + doctests, the book (built, browser-checked), nbval
#   bash dev.sh setup                      # only the set-up
#
# Set-up is idempotent: a second call only checks. It creates .venv, installs torch (the pin
# below, which this project's CI machines hold on local disk; override with TORCH_SPEC), the
# package with its book and dev extras, and on Debian as root the FashionMNIST files and
# chromium for the browser check.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
VENV=.venv

apt_install() {
    local missing=()
    [ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
    if [ "${1:-}" = test ]; then command -v chromium >/dev/null || missing+=(chromium); fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== apt-get install ${missing[*]}"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "note: could not install ${missing[*]} (needs root and apt-get); FashionMNIST runs and the browser check will be skipped or fail" >&2
    fi
}

setup() {
    apt_install "${1:-}"
    [ -x "$VENV/bin/python" ] || { echo "== creating $VENV"; "$PY" -m venv "$VENV"; }
    if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
        echo "== pip install $TORCH_SPEC"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        # shellcheck disable=SC2086
        "$VENV/bin/python" -m pip install -q $TORCH_SPEC
    fi
    if ! "$VENV/bin/python" -c "import cake_mini, jupytext, nbval, playwright, sklearn" 2>/dev/null; then
        echo "== pip install -e .[book,dev]"
        "$VENV/bin/python" -m pip install -q -e ".[book,dev]"
    fi
    if [ "${1:-}" = test ] && [ ! -d "$VENV/mathjax/node_modules/mathjax/es5" ] && command -v npm >/dev/null; then
        echo "== npm install mathjax@3 (local copy for the browser check)"
        npm install --silent --no-save --prefix "$VENV/mathjax" mathjax@3 >/dev/null 2>&1 || echo "note: mathjax not installed" >&2
    fi
}

cmd="${1:-run}"
shift || true
case "$cmd" in
setup)
    setup test
    ;;
run)
    setup
    if [ $# -eq 0 ]; then set -- digits; fi
    exec "$VENV/bin/cake-mini" run "$@"
    ;;
test)
    setup test
    export PATH="$PWD/$VENV/bin:$PATH" PYTHON="$PWD/$VENV/bin/python" CAKE_MINI_SIZE=smoke
    # Smoke-size models are tiny: one thread per process is as fast, and several processes
    # (kernels, the resume tests' workers) then never fight over the cores.
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    [ -d "$VENV/mathjax/node_modules/mathjax/es5" ] && export CAKE_MINI_MATHJAX_DIR="$PWD/$VENV/mathjax/node_modules/mathjax/es5"
    bash scripts/check_wheel.sh   # the built wheel, installed in a fresh venv, smoke-tested outside the repo
    echo "== book: build every chapter at smoke size"
    bash scripts/build_book.sh
    echo "== notebooks under nbval (smoke size)"
    rm -rf _build/nbval && bash scripts/convert_notebooks.sh _build/nbval >/dev/null
    # results_dir() looks in . and .. only, not two levels up from _build/nbval/notebooks: point the
    # chapters at the results files, so the cells that read them (and assert the prose) run here too
    CAKE_MINI_RESULTS="$PWD/benchmarks/results" python -m pytest --nbval-lax -p no:cacheprovider -q _build/nbval/notebooks
    echo "== unit tests, doctests, browser check of the built book"
    python -m pytest -q
    ;;
*)
    echo "usage: bash dev.sh run [experiment args] | test | setup" >&2
    exit 2
    ;;
esac
