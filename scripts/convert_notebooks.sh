#!/usr/bin/env bash
# Convert every chapter notebooks/*.py (py:percent) into OUTDIR/notebooks/<name>.ipynb.
#
#   bash scripts/convert_notebooks.sh OUTDIR
#
# Used by nbval (which only collects .ipynb), by the publish step of
# .github/workflows/book.yml (the `notebooks` branch that the Colab buttons open) and by
# scripts/build_book.sh (OUTDIR=. puts the .ipynb beside the sources, which makes the
# theme's Colab button link the .ipynb instead of the .py).
# The notebooks carry Colab metadata asking for a GPU runtime. They are not executed.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1/notebooks"
outdir="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.."

JUPYTEXT="${JUPYTEXT:-jupytext}"
COLAB_METADATA='{"accelerator": "GPU", "colab": {"provenance": [], "gpuType": "T4"}}'

shopt -s nullglob
chapters=(notebooks/*.py)
if [ ${#chapters[@]} -eq 0 ]; then
    echo "no chapters found in notebooks/*.py" >&2
    exit 1
fi
for src in "${chapters[@]}"; do
    name="$(basename "$src" .py)"
    "$JUPYTEXT" --quiet --from py:percent --to ipynb \
        --update-metadata "$COLAB_METADATA" \
        --output "$outdir/notebooks/$name.ipynb" "$src"
done
echo "converted ${#chapters[@]} chapter(s) into $outdir/notebooks/"
