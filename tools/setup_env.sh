#!/usr/bin/env bash
# Build the whole mmseg_wsbcn environment from nothing, in ./.venv of this checkout.
#
#   bash tools/setup_env.sh
#
# Steps (each one is skipped when it is already done, so a second run takes seconds):
#   1. create .venv with Python 3.11
#   2. install the CPU build of torch FIRST (every later pip call gets the constraints file,
#      so nothing can pull a newer torch with CUDA packages)
#   3. install the build tools mmcv needs (setuptools<81, wheel, ninja)
#   4. build mmcv 2.1.0 from source WITH its compiled ops (6-12 minutes on 2 cores),
#      or reuse a wheel built earlier, but only after checking it really holds the ops
#   5. install mmengine, mmsegmentation, opencv, the test tools, the optional extras named in
#      EXTRAS and this package (editable)
#   6. prove it: import mmcv.ops, mmseg.models and mmseg_wsbcn (and each extra's check-import)
#
# Environment variables:
#   PYTHON            interpreter used to create the venv (default: python3.11, else python3)
#   VENV              where to create it (default: <checkout>/.venv)
#   MMCV_WHEEL_DIR    where built mmcv wheels are kept for reuse
#                     (default: ${XDG_CACHE_HOME:-~/.cache}/mmseg_wsbcn/wheels)
#   MAX_JOBS          parallel compile jobs for mmcv (default: number of cores)
#   EXTRAS            optional extras to install too, comma-separated, e.g. EXTRAS=cityscapes
#                     (default: none); each is requirements/<extra>.txt, the same list as
#                     setup.cfg's [options.extras_require]; its `# check-import: MODULE` lines
#                     are imported in step 6
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
MMCV_VERSION="2.1.0"
TORCH_VERSION="2.13.0"
MMCV_WHEEL_DIR="${MMCV_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmseg_wsbcn/wheels}"
STEP="start"
T0=$SECONDS
EXTRAS="${EXTRAS:-}"

log() { printf '[setup %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
fail() { printf '[setup] FAILED at step "%s": %s\n' "$STEP" "$*" >&2; exit 1; }
trap 'rc=$?; [ $rc -ne 0 ] && printf "[setup] FAILED at step \"%s\" (exit code %d); see the output above.\n" "$STEP" "$rc" >&2' EXIT

# ---------------------------------------------------------------- 0. extras
# EXTRAS=a,b -> requirements/a.txt requirements/b.txt (checked before anything is installed)
STEP="0/6 check EXTRAS"
EXTRA_NAMES=()
extra_file() {  # extra_file NAME -> requirements/NAME.txt, or nothing when NAME is not an extra
    case "$1" in build|runtime|tests|constraints|"") return 1 ;; esac
    [ -f "$ROOT/requirements/$1.txt" ] && printf '%s' "$ROOT/requirements/$1.txt"
}
add_extra() {  # add_extra NAME: remember NAME once
    case " ${EXTRA_NAMES[*]-} " in *" $1 "*) return 0 ;; esac
    EXTRA_NAMES+=("$1")
}
IFS=', ' read -r -a _extras <<< "$EXTRAS"
for extra in ${_extras[@]+"${_extras[@]}"}; do
    [ -n "$extra" ] || continue
    extra_file "$extra" >/dev/null || fail "unknown extra '$extra' in EXTRAS=$EXTRAS; the extras are: $(cd "$ROOT/requirements" && ls *.txt | sed 's/\.txt$//' | grep -vxE 'build|runtime|tests|constraints' | paste -sd, -)"
    add_extra "$extra"
done
REQUESTED_EXTRAS=(${EXTRA_NAMES[@]+"${EXTRA_NAMES[@]}"})
[ ${#EXTRA_NAMES[@]} -eq 0 ] || log "extras: ${EXTRA_NAMES[*]}"

# ---------------------------------------------------------------- 1. venv
STEP="1/6 create the virtual environment"
if [ ! -x "$VENV/bin/python" ]; then
    PY="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
    [ -n "$PY" ] || fail "no python3.11 or python3 on PATH; set PYTHON=/path/to/python3.11"
    "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
        || fail "$PY is Python $("$PY" -c 'import sys; print(sys.version.split()[0])'); Python 3.11 is required (set PYTHON=...)"
    log "$STEP: $VENV (from $PY)"
    "$PY" -m venv "$VENV" || fail "python -m venv $VENV failed"
else
    log "$STEP: $VENV already exists"
fi
PYBIN="$VENV/bin/python"
PIP=("$PYBIN" -m pip --disable-pip-version-check)

has_version() {  # has_version DIST VERSION -> 0 when DIST==VERSION is installed in the venv
    "$PYBIN" - "$1" "$2" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    v = version(sys.argv[1])
except PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if v.split('+')[0] == sys.argv[2] else 1)
EOF
}

# ---------------------------------------------------------------- 2. torch
STEP="2/6 install torch==$TORCH_VERSION (CPU build) first"
if has_version torch "$TORCH_VERSION"; then
    log "$STEP: already installed"
else
    log "$STEP"
    "${PIP[@]}" install "torch==$TORCH_VERSION" -c "$CONSTRAINTS" \
        || fail "pip could not install torch==$TORCH_VERSION (is the CPU wheel reachable by pip?)"
fi

# ---------------------------------------------------------------- 3. build tools
STEP="3/6 install build tools (setuptools<81, wheel, ninja)"
if "$PYBIN" -c 'import setuptools, wheel, ninja, pkg_resources, sys; sys.exit(int(setuptools.__version__.split(".")[0]) >= 81)' 2>/dev/null; then
    log "$STEP: already installed"
else
    log "$STEP"
    "${PIP[@]}" install -r "$ROOT/requirements/build.txt" -c "$CONSTRAINTS" || fail "pip install of the build tools failed"
fi

# ---------------------------------------------------------------- 4. mmcv with ops
STEP="4/6 mmcv==$MMCV_VERSION with compiled ops"
# mmcv cannot be imported before mmengine is installed (step 5), so check
# for the compiled extension file here and import it in step 6.
mmcv_has_ops() { "$PYBIN" -c 'import glob, importlib.util, os, sys; s = importlib.util.find_spec("mmcv"); sys.exit(0 if s and glob.glob(os.path.join(os.path.dirname(s.origin), "_ext*.so")) else 1)' 2>/dev/null; }
wheel_has_ops() { "$PYBIN" - "$1" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
sys.exit(0 if any(n.startswith('mmcv/_ext') and n.endswith('.so') for n in names) else 1)
EOF
}
if has_version mmcv "$MMCV_VERSION" && mmcv_has_ops; then
    log "$STEP: already installed, with its compiled ops"
else
    mkdir -p "$MMCV_WHEEL_DIR"
    WHEEL="$(ls "$MMCV_WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
    if [ -n "$WHEEL" ] && ! wheel_has_ops "$WHEEL"; then
        log "$STEP: discarding $WHEEL (it holds no compiled ops)"
        rm -f "$WHEEL"; WHEEL=""
    fi
    if [ -z "$WHEEL" ]; then
        log "$STEP: building from source (6-12 minutes on 2 cores; pip prints 'still running...' meanwhile)"
        BUILD_DIR="$(mktemp -d)"
        MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" CFLAGS="-g0" \
            "${PIP[@]}" wheel "mmcv==$MMCV_VERSION" --no-deps --no-binary mmcv --no-cache-dir \
            --no-build-isolation -c "$CONSTRAINTS" -w "$BUILD_DIR" \
            || fail "building mmcv==$MMCV_VERSION from source failed (needs gcc, Python headers, torch, setuptools<81, ninja)"
        WHEEL="$(ls "$BUILD_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)"
        wheel_has_ops "$WHEEL" || fail "the mmcv wheel built without its compiled ops (mmcv/_ext*.so missing); not installing it"
        mv "$WHEEL" "$MMCV_WHEEL_DIR/" && WHEEL="$MMCV_WHEEL_DIR/$(basename "$WHEEL")"
        rm -rf "$BUILD_DIR"
        log "$STEP: built $WHEEL"
    else
        log "$STEP: reusing $WHEEL"
    fi
    "${PIP[@]}" install --no-deps --force-reinstall "$WHEEL" || fail "pip install $WHEEL failed"
    mmcv_has_ops || fail "mmcv installed from $WHEEL has no compiled ops; remove that wheel and run again"
fi

# ---------------------------------------------------------------- 5. the rest + this package
STEP="5/6 install mmengine, mmsegmentation, opencv, pytest${EXTRAS:+, extras ${EXTRA_NAMES[*]-}} and mmseg_wsbcn (editable)"
# The stamp holds the fingerprint of every requirements file (extras included) and of the
# package metadata (line 1), and the extras installed (line 2). Extras installed by an
# earlier run stay installed and are updated with the rest when a requirements file changes.
STAMP="$VENV/.mmseg_wsbcn-setup"
FINGERPRINT="$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.cfg" "$ROOT/pyproject.toml" 2>/dev/null | cksum)"
STAMP_FINGERPRINT="" STAMP_EXTRAS=""
if [ -f "$STAMP" ]; then
    STAMP_FINGERPRINT="$(sed -n 1p "$STAMP")"
    STAMP_EXTRAS="$(sed -n 2p "$STAMP")"
fi
UP_TO_DATE=0
if [ "$STAMP_FINGERPRINT" = "$FINGERPRINT" ]; then
    UP_TO_DATE=1
    for extra in ${REQUESTED_EXTRAS[@]+"${REQUESTED_EXTRAS[@]}"}; do
        case ",$STAMP_EXTRAS," in *",$extra,"*) ;; *) UP_TO_DATE=0 ;; esac
    done
fi
for extra in ${STAMP_EXTRAS//,/ }; do  # keep (and update) what an earlier run installed
    extra_file "$extra" >/dev/null && add_extra "$extra"
done
if [ "$UP_TO_DATE" = 1 ]; then
    log "$STEP: already installed (requirements unchanged${STAMP_EXTRAS:+; extras $STAMP_EXTRAS})"
else
    log "$STEP"
    EXTRA_REQS=()
    for extra in ${EXTRA_NAMES[@]+"${EXTRA_NAMES[@]}"}; do EXTRA_REQS+=(-r "$(extra_file "$extra")"); done
    "${PIP[@]}" install -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" ${EXTRA_REQS[@]+"${EXTRA_REQS[@]}"} -c "$CONSTRAINTS" \
        || fail "pip install of the runtime requirements${EXTRA_NAMES[*]:+ and the extras (${EXTRA_NAMES[*]})} failed"
    "${PIP[@]}" install --no-build-isolation --no-deps -e "$ROOT" || fail "editable install of mmseg_wsbcn failed"
    printf '%s\n%s\n' "$FINGERPRINT" "$(printf '%s\n' ${EXTRA_NAMES[@]+"${EXTRA_NAMES[@]}"} | sort | paste -sd, -)" > "$STAMP"
fi

# ---------------------------------------------------------------- 6. prove it
STEP="6/6 check the environment"
"$PYBIN" - <<'EOF' || fail "the environment is incomplete (see the error above); if 'import mmcv.ops' failed, remove $MMCV_WHEEL_DIR and run again"
import torch, mmcv, mmcv.ops, mmengine, mmseg, mmseg.models, mmseg_wsbcn
from mmcv.utils import ext_loader
ext_loader.load_ext('_ext', ['nms'])
print(f'[setup] torch {torch.__version__} | mmcv {mmcv.__version__} (ops ok) | '
      f'mmengine {mmengine.__version__} | mmseg {mmseg.__version__} | '
      f'mmseg_wsbcn {mmseg_wsbcn.__version__}')
EOF
for extra in ${EXTRA_NAMES[@]+"${EXTRA_NAMES[@]}"}; do
    for module in $(sed -n 's/^# check-import:[[:space:]]*//p' "$(extra_file "$extra")"); do
        "$PYBIN" -c "import $module" \
            || fail "extra '$extra': 'import $module' failed (see the error above)"
    done
    log "extra '$extra' ok"
done
log "done. Activate with: source ${VENV#$ROOT/}/bin/activate"
