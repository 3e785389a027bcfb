#!/usr/bin/env bash
# Build the wheel, install it into a fresh virtual environment, and smoke-test the INSTALLED
# package from a folder outside the repository (what `pip install cake_mini` users get).
#
#   bash scripts/check_wheel.sh          # about half a minute; dev.sh test runs it
#
# Checks: every file of cake_mini/ is in the wheel (a new subpackage or data file that
# pyproject.toml does not ship fails here), the metadata version equals cake_mini.__version__,
# the installed package (not this checkout) is imported, every module imports, the doctests
# pass, `cake-mini list` and `python -m cake_mini list` work, and a toy2d run synthesises
# and distils. The fresh venv reuses the dependencies already installed in .venv (torch is
# large) through a .pth line; .venv's own .pth files, among them the editable install of
# this checkout, are not processed, so only the wheel provides cake_mini.
# The build runs on a copy of the sources: no build/ or *.egg-info lands in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/cake_mini-wheel.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
echo "== wheel: build, install into a fresh venv, smoke-test the installed package"

# 1. Build from a copy of what a release builds from.
mkdir -p "$tmp/src"
for f in pyproject.toml README.md LICENSE* MANIFEST.in setup.py setup.cfg; do
    [ -e "$f" ] && cp "$f" "$tmp/src/"
done
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - cake_mini | tar -C "$tmp/src" -xf -
isolation=()
# setuptools in .venv: build without downloading it again (pip's isolated build otherwise)
if "$PY" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 64)" 2>/dev/null; then
    isolation=(--no-build-isolation)
fi
"$PY" -m pip wheel -q --no-deps "${isolation[@]}" --wheel-dir "$tmp/dist" "$tmp/src" >"$tmp/build.log" 2>&1 \
    || { cat "$tmp/build.log"; exit 1; }
wheel=("$tmp"/dist/cake_mini-*.whl)
echo "built $(basename "${wheel[0]}")"

# 2. Is everything of the copied sources in it?
"$PY" - "${wheel[0]}" "$tmp/src" <<'PY'
import re, sys, tomllib, zipfile
from pathlib import Path

wheel, root = Path(sys.argv[1]), Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
package = root / "cake_mini"
want = {p.relative_to(root).as_posix() for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
missing = sorted(want - names)
assert not missing, f"files of cake_mini/ missing from the wheel (pyproject.toml [tool.setuptools]): {missing}"
extra = sorted(n for n in names if not n.startswith(("cake_mini/", "cake_mini-")))
assert not extra, f"the wheel ships files outside the package: {extra}"
meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
version = re.search(r"^Version: (.+)$", zipfile.ZipFile(wheel).read(meta).decode(), re.M)[1]
project = tomllib.load(open(root / "pyproject.toml", "rb"))["project"]
init = re.search(r'^__version__ = "(.+)"', (package / "__init__.py").read_text(), re.M)[1]
assert version == project["version"] == init, (
    f"versions disagree: wheel {version}, pyproject.toml {project['version']}, cake_mini.__version__ {init}")
entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
assert "cake-mini = cake_mini.cli:main" in zipfile.ZipFile(wheel).read(entry).decode(), "no cake-mini script"
print(f"wheel holds all {len(want)} files of cake_mini/, version {version}")
PY

# 3. A fresh venv with only the wheel, seeing .venv's other packages through a .pth line.
"$PY" -m venv --without-pip "$tmp/venv"
VPY="$tmp/venv/bin/python"
"$PY" -m pip --python "$VPY" install -q --no-deps "${wheel[0]}"
site_dev="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
site_new="$("$VPY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
echo "$site_dev" > "$site_new/zz_dev_venv_dependencies.pth"

# 4. Smoke test from outside the repository.
mkdir -p "$tmp/work"
cd "$tmp/work"
export PYTHONNOUSERSITE=1
unset PYTHONPATH
"$VPY" - "$ROOT" "$site_new" <<'PY'
import importlib, pkgutil, sys
from pathlib import Path

root, site = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
import cake_mini

where = Path(cake_mini.__file__).resolve()
assert root not in where.parents, f"cake_mini was imported from the checkout ({where}), not from the wheel"
assert site in where.parents, f"cake_mini was imported from {where}, expected the fresh venv {site}"
for module in pkgutil.iter_modules(cake_mini.__path__):
    if module.name != "__main__":
        importlib.import_module(f"cake_mini.{module.name}")

import torch
from torch.utils.data import TensorDataset
from cake_mini import DistillConfig, SynthesisConfig, distill, evaluate, synthesize, train_classifier
from cake_mini.data import toy2d
from cake_mini.models import make_model

torch.manual_seed(0)
x, y = toy2d("moons", 400, seed=0)
teacher = make_model("mlp", 2, in_features=2, hidden=32, depth=2)
train_classifier(teacher, TensorDataset(x, y), DistillConfig(epochs=10, lr=0.05, val_fraction=0.0), progress=False)
synthetic = synthesize(teacher.eval(), (2,), 2, SynthesisConfig(num_samples=200, batch_size=20, steps=20,
                       w_cls=10.0, w_contr=0.1, w_tv=0.0), progress=False)
student = make_model("mlp", 2, in_features=2, hidden=16, depth=1)
distill(student, synthetic, DistillConfig(epochs=5, lr=0.05, val_fraction=0.0), progress=False)
assert synthetic.x.shape == (200, 2) and torch.isfinite(synthetic.x).all()
print(f"installed cake_mini {cake_mini.__version__} from {where.parent}: toy2d teacher "
      f"{evaluate(teacher, TensorDataset(x, y)):.0%}, data-free student {evaluate(student, TensorDataset(x, y)):.0%}")
PY
"$tmp/venv/bin/cake-mini" list >/dev/null
"$VPY" -m cake_mini list >/dev/null
"$VPY" -m pytest -q -p no:cacheprovider --doctest-modules --pyargs cake_mini \
    --ignore-glob='*/cake_mini/__main__.py' >"$tmp/doctest.log" 2>&1 || { cat "$tmp/doctest.log"; exit 1; }
echo "doctests of the installed package: $(tail -n 1 "$tmp/doctest.log")"
echo "wheel check passed in $((SECONDS - start)) s"
