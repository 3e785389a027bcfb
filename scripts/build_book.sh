#!/usr/bin/env bash
# Build the book into _build/html, executing every chapter.
#
#   bash scripts/build_book.sh                       # smoke size (what CI publishes)
#   CAKE_MINI_SIZE=default bash scripts/build_book.sh
#
# Exits non-zero when any chapter cell fails (execute.raise_on_error in _config.yml) or when
# Sphinx emits any warning (-W --keep-going: all warnings are listed, then the build fails).
# Extra arguments go to `jupyter-book build`.
set -euo pipefail
cd "$(dirname "$0")/.."

export CAKE_MINI_SIZE="${CAKE_MINI_SIZE:-smoke}"
JB="${JUPYTER_BOOK:-jupyter-book}"
config=_config.yml
start=$SECONDS

# The Colab launch button links notebooks/<chapter>.ipynb only when that file exists beside
# notebooks/<chapter>.py at build time (sphinx_book_theme/header_buttons/launch.py), so
# generate the missing ones for the duration of the build (_config.yml keeps them out of
# Sphinx) and remove them afterwards. Existing .ipynb files (yours) are left alone.
tmp="$(mktemp -d)"
created=()
cleanup() {
    for f in "${created[@]}"; do rm -f "$f"; done
    rm -rf "$tmp" _build/_config.size.yml
}
trap cleanup EXIT
"${PYTHON:-python}" scripts/results_page.py   # book/results.md from benchmarks/results/ (the Results page)
bash scripts/convert_notebooks.sh "$tmp" >/dev/null
for nb in "$tmp"/notebooks/*.ipynb; do
    dest="notebooks/$(basename "$nb")"
    if [ ! -e "$dest" ]; then
        created+=("$dest")
        cp "$nb" "$dest"
    fi
done

# Larger sizes have cells that run longer than the 600 s smoke-size limit: lift it.
if [ "$CAKE_MINI_SIZE" != smoke ]; then
    mkdir -p _build
    config=_build/_config.size.yml
    "${PYTHON:-python}" - <<'PY'
import yaml
cfg = yaml.safe_load(open("_config.yml"))
cfg["execute"]["timeout"] = -1
yaml.safe_dump(cfg, open("_build/_config.size.yml", "w"), sort_keys=False)
PY
fi

echo "building the book at CAKE_MINI_SIZE=$CAKE_MINI_SIZE"
status=0
"$JB" build . --all -W --keep-going --config "$config" "$@" || status=$?
echo "book build finished in $((SECONDS - start)) s with status $status (CAKE_MINI_SIZE=$CAKE_MINI_SIZE)"
exit $status
