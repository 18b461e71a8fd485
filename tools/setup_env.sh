#!/usr/bin/env bash
# Build the whole mmseg_wsbcn environment from nothing, in ./.venv of this checkout.
#
#   bash tools/setup_env.sh            # do it
#   bash tools/setup_env.sh --plan     # print the steps it would take on this machine, do nothing
#
# Steps (each one is skipped when it is already done, so a second run takes seconds):
#   1. create .venv with Python 3.11
#   2. install torch FIRST: the CPU build (2.13.0) on a machine without a GPU, a CUDA build
#      (2.14.1) when nvidia-smi finds a GPU or DEVICE=cuda; every later pip call gets the
#      stack's constraints file, so nothing can pull another torch
#   3. install the build tools mmcv needs (setuptools<81, wheel, ninja)
#   4. mmcv with its compiled ops (CUDA ops on the CUDA path): a wheel built earlier (checked
#      to hold the ops), the fork's prebuilt wheel for this torch/CUDA pair (STACK=onedl,
#      where its index has one and is reachable), or a source build (6-12 minutes on 2 cores
#      for the CPU ops, about 40 minutes with CUDA ops; C++20 for torch >= 2.14)
#   5. install mmengine, mmsegmentation, opencv, the test tools, the optional extras named in
#      EXTRAS and this package (editable)
#   6. prove it: import mmcv.ops and run one op (on the GPU on the CUDA path), import
#      mmseg.models and mmseg_wsbcn (and each extra's check-import), pip check
#
# Environment variables:
#   STACK             openmmlab (default: upstream mmcv 2.1.0, mmengine 0.10.7, mmseg 1.2.2)
#                     or onedl (the maintained fork: onedl-mmcv 2.3.6, onedl-mmengine 0.10.12,
#                     onedl-mmsegmentation 1.4.2); pins in requirements/constraints[-onedl].txt
#   DEVICE            auto (default: cuda when nvidia-smi lists a GPU, else cpu), cpu or cuda
#   TORCH_VERSION     default 2.13.0 on cpu, 2.14.1 on cuda
#   TORCH_INDEX_URL   extra pip index for torch, e.g. https://download.pytorch.org/whl/cu128
#   TORCH_CUDA_ARCH_LIST  GPU architectures to compile for (default: the GPU's compute
#                     capability, from nvidia-smi); needed with DEVICE=cuda on a machine
#                     without a GPU
#   CUDA_HOME         the CUDA toolkit whose nvcc compiles the CUDA ops (default: from nvcc
#                     on PATH, else the nvcc of a pip wheel in the venv)
#   ONEDL_MMCV_INDEX_URL  the fork's wheel index, {cuda} and {torch} filled in (default:
#                     https://mmwheels.onedl.ai/{cuda}-torch{torch}/); empty: always build
#   PYTHON            interpreter used to create the venv (default: python3.11, else python3)
#   VENV              where to create it (default: <checkout>/.venv)
#   MMCV_WHEEL_DIR    where mmcv wheels are kept for reuse
#                     (default: ${XDG_CACHE_HOME:-~/.cache}/mmseg_wsbcn/wheels)
#   MAX_JOBS          parallel compile jobs for mmcv (default: number of cores)
#   EXTRAS            optional extras to install too, comma-separated, e.g. EXTRAS=cityscapes
#                     (default: none); each is requirements/<extra>.txt (with STACK=onedl,
#                     requirements/onedl-<extra>.txt where there is one), the same list as
#                     setup.cfg's [options.extras_require]; its `# check-import: MODULE`
#                     lines are imported in step 6
set -euo pipefail

PLAN=0
for arg in "$@"; do
    case "$arg" in
        --plan) PLAN=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) printf '[setup] unknown argument %s; the only argument is --plan\n' "$arg" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
STACK="${STACK:-openmmlab}"
DEVICE="${DEVICE:-auto}"
MMCV_WHEEL_DIR="${MMCV_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmseg_wsbcn/wheels}"
DEFAULT_ONEDL_INDEX='https://mmwheels.onedl.ai/{cuda}-torch{torch}/'
ONEDL_MMCV_INDEX_URL="${ONEDL_MMCV_INDEX_URL-$DEFAULT_ONEDL_INDEX}"
STEP="start"
T0=$SECONDS
EXTRAS="${EXTRAS:-}"

log() { printf '[setup %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
SAID=0
fail() { printf '[setup] FAILED at step "%s": %s\n' "$STEP" "$*" >&2; SAID=1; exit 1; }
on_exit() { local rc=$1; [ $rc -ne 0 ] && [ $rc -ne 2 ] && [ $SAID = 0 ] && printf '[setup] FAILED at step "%s" (exit code %d); see the output above.\n' "$STEP" "$rc" >&2; return 0; }
trap 'on_exit $?' EXIT
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }  # $1 >= $2
pin() { sed -n "s/^$1==\([^[:space:]]*\).*/\1/p" "$2" | head -n 1; }  # pin DIST FILE -> version

# ---------------------------------------------------------------- 0. decide
STEP="0/6 decide"
case "$STACK" in
    openmmlab) CONSTRAINTS="$ROOT/requirements/constraints.txt"; MMCV_DIST=mmcv ;;
    onedl) CONSTRAINTS="$ROOT/requirements/constraints-onedl.txt"; MMCV_DIST=onedl-mmcv ;;
    *) fail "unknown STACK=$STACK; the stacks are: openmmlab (upstream, the default), onedl (the maintained fork)" ;;
esac
STACK_REQS="$ROOT/requirements/$STACK.txt"
MMCV_VERSION="$(pin "$MMCV_DIST" "$CONSTRAINTS")"
[ -n "$MMCV_VERSION" ] || fail "$CONSTRAINTS pins no $MMCV_DIST version"

# the GPU, as nvidia-smi sees it
GPU_NAMES="" GPU_CAPS=""
if command -v nvidia-smi >/dev/null 2>&1; then
    if gpus="$(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null)" && [ -n "$gpus" ]; then
        GPU_NAMES="$(printf '%s\n' "$gpus" | cut -d, -f1 | sed 's/^ *//; s/ *$//' | sort -u | paste -sd'|' -)"
        GPU_CAPS="$(printf '%s\n' "$gpus" | cut -d, -f2 | tr -d ' ' | sort -u | paste -sd';' -)"
    fi
fi
case "$DEVICE" in
    auto) if [ -n "$GPU_NAMES" ]; then DEVICE=cuda; WHY="nvidia-smi lists $GPU_NAMES"; else DEVICE=cpu; WHY="no GPU (nvidia-smi $(command -v nvidia-smi >/dev/null 2>&1 && echo 'lists none' || echo 'not found'))"; fi ;;
    cpu) WHY="DEVICE=cpu" ;;
    cuda) WHY="DEVICE=cuda${GPU_NAMES:+; nvidia-smi lists $GPU_NAMES}${GPU_NAMES:-; no GPU here: build only}" ;;
    *) fail "unknown DEVICE=$DEVICE; use auto (the default), cpu or cuda" ;;
esac
if [ "$DEVICE" = cuda ]; then TORCH_VERSION="${TORCH_VERSION:-2.14.1}"; else TORCH_VERSION="${TORCH_VERSION:-2.13.0}"; fi
case "$TORCH_VERSION" in  # the torchvision that matches (for the extras that import it)
    2.14.1) TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}" ;;
    2.13.0) TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.28.0}" ;;
    *) TORCHVISION_VERSION="${TORCHVISION_VERSION:-}" ;;
esac
# torch >= 2.14's headers need C++20; mmcv's setup.py asks for C++14/17 (mmcv#3341)
CXX_STD=""
version_ge "$TORCH_VERSION" 2.14 && CXX_STD="c++20"

# the CUDA toolkit (only its nvcc and headers are needed)
cuda_home_of() {  # the toolkit folder of an nvcc, also when nvcc on PATH is a wrapper script
    local top; top="$("$1" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n 1)"
    if [ -n "$top" ]; then (cd "$top" && pwd -P); else dirname "$(dirname "$1")"; fi
}
find_nvcc() {  # NVCC and CUDA_HOME: $CUDA_HOME's nvcc, else nvcc on PATH, else a pip wheel's in the venv
    if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then NVCC="$CUDA_HOME/bin/nvcc"
    elif command -v nvcc >/dev/null 2>&1; then NVCC="$(readlink -f "$(command -v nvcc)")"
    else NVCC="$(ls "$VENV"/lib/python3*/site-packages/nvidia/*/bin/nvcc 2>/dev/null | head -n 1 || true)"
    fi
    if [ -n "$NVCC" ]; then CUDA_HOME="$(cuda_home_of "$NVCC")"; fi
}
NVCC=""
if [ "$DEVICE" = cuda ]; then
    find_nvcc
    ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$GPU_CAPS}"
fi

# where the built or downloaded mmcv wheel is kept: one folder per stack, torch and device
torch_cuda_tag() {  # cu130 / cpu: the installed torch's, else what TORCH_INDEX_URL or the release says
    local v=""
    [ -x "$VENV/bin/python" ] && v="$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda or "cpu")' 2>/dev/null || true)"
    if [ -n "$v" ]; then [ "$v" = cpu ] && echo cpu || echo "cu${v//./}"; return; fi
    if [ "$DEVICE" = cpu ]; then echo cpu; return; fi
    case "${TORCH_INDEX_URL:-}" in */cu[0-9]*) echo "${TORCH_INDEX_URL##*/}" | grep -o 'cu[0-9]*'; return ;; esac
    case "$TORCH_VERSION" in 2.14.*|2.13.*) echo cu130 ;; *) echo "cu?" ;; esac
}
build_key() { local k="torch$TORCH_VERSION-$DEVICE"; [ "$DEVICE" = cuda ] && k="torch$TORCH_VERSION-$(torch_cuda_tag)-sm${ARCH_LIST//[;. ]/_}"; echo "$k"; }
CACHE_DIR="$MMCV_WHEEL_DIR/$MMCV_DIST-$MMCV_VERSION/$(build_key)"
wheel_index_url() {  # the fork's index for this torch/CUDA pair, or nothing
    [ "$STACK" = onedl ] && [ -n "$ONEDL_MMCV_INDEX_URL" ] || return 0
    local url="$ONEDL_MMCV_INDEX_URL" cuda='{cuda}' torch='{torch}' digits="${TORCH_VERSION//./}"
    url="${url//"$cuda"/$(torch_cuda_tag)}"
    printf '%s' "${url//"$torch"/$digits}"
}
index_has_wheel() {  # index_has_wheel URL -> 0 when the index lists onedl-mmcv==VERSION for this Python
    "${PYTHON:-python3}" - "${1%/}/onedl-mmcv/" "onedl_mmcv-$MMCV_VERSION-cp311-cp311-" <<'EOF' 2>/dev/null
import re, sys, urllib.request
try:
    page = urllib.request.urlopen(sys.argv[1], timeout=15).read().decode()
except Exception:  # unreachable, no such folder: no wheel
    sys.exit(1)
sys.exit(0 if re.search(re.escape(sys.argv[2]) + r'\S*linux\S*\.whl', page) else 1)
EOF
}

# ---------------------------------------------------------------- 0b. EXTRAS
# EXTRAS=a,b -> requirements/a.txt requirements/b.txt (checked before anything is installed);
# with STACK=onedl, requirements/onedl-a.txt where there is one
EXTRA_NAMES=()
extra_file() {  # extra_file NAME -> the requirements file of extra NAME for this stack
    case "$1" in build|runtime|tests|constraints|constraints-*|openmmlab|onedl|"") return 1 ;; esac
    if [ "$STACK" = onedl ] && [ -f "$ROOT/requirements/onedl-$1.txt" ]; then
        printf '%s' "$ROOT/requirements/onedl-$1.txt"
    elif [ -f "$ROOT/requirements/$1.txt" ]; then
        printf '%s' "$ROOT/requirements/$1.txt"
    else
        return 1
    fi
}
add_extra() {  # add_extra NAME: remember NAME once
    case " ${EXTRA_NAMES[*]-} " in *" $1 "*) return 0 ;; esac
    EXTRA_NAMES+=("$1")
}
IFS=', ' read -r -a _extras <<< "$EXTRAS"
for extra in ${_extras[@]+"${_extras[@]}"}; do
    [ -n "$extra" ] || continue
    extra_file "$extra" >/dev/null || fail "unknown extra '$extra' in EXTRAS=$EXTRAS; the extras are: $(cd "$ROOT/requirements" && ls *.txt | sed 's/\.txt$//' | grep -vxE 'build|runtime|tests|constraints|constraints-.*|openmmlab|onedl|onedl-.*' | paste -sd, -)"
    add_extra "$extra"
done
REQUESTED_EXTRAS=(${EXTRA_NAMES[@]+"${EXTRA_NAMES[@]}"})
NEEDS_TORCHVISION=0
for extra in ${EXTRA_NAMES[@]+"${EXTRA_NAMES[@]}"}; do
    grep -q '^torchvision' "$(extra_file "$extra")" && NEEDS_TORCHVISION=1
done

# ---------------------------------------------------------------- the plan
# one stack a venv: the other stack's mmcv would share its files with this one's
OTHER_MMCV="$([ "$STACK" = onedl ] && echo mmcv || echo onedl-mmcv)"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import importlib.metadata as m; m.version('$OTHER_MMCV')" 2>/dev/null; then
    fail "$VENV holds the other stack ($OTHER_MMCV is installed); use another VENV for STACK=$STACK (e.g. VENV=.venv-$STACK) or remove $VENV"
fi
TORCH_WHAT="torch==$TORCH_VERSION"
[ "$NEEDS_TORCHVISION" = 1 ] && TORCH_WHAT="$TORCH_WHAT torchvision==${TORCHVISION_VERSION:-?}"
if [ "$DEVICE" = cuda ]; then TORCH_BUILD="a CUDA build (pip's default build of that release${TORCH_INDEX_URL:+, or from $TORCH_INDEX_URL})"
else TORCH_BUILD="the CPU build${TORCH_INDEX_URL:+ (from $TORCH_INDEX_URL)}"; fi
MMCV_HOW=""
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$MMCV_DIST').split('+')[0] != '$MMCV_VERSION')" 2>/dev/null; then
    MMCV_HOW="already installed (its compiled ops are checked)"
elif ls "$CACHE_DIR"/*.whl >/dev/null 2>&1; then
    MMCV_HOW="reuse $(ls "$CACHE_DIR"/*.whl | head -n 1) (checked to hold its ops)"
else
    INDEX_URL="$(wheel_index_url)"
    if [ -n "$INDEX_URL" ] && index_has_wheel "$INDEX_URL"; then
        MMCV_HOW="download the fork's prebuilt wheel from $INDEX_URL"
    else
        [ -n "$INDEX_URL" ] && MMCV_HOW="no prebuilt wheel at $INDEX_URL for this torch/CUDA pair (or it is unreachable); "
        MMCV_HOW="${MMCV_HOW}build from source: MMCV_WITH_OPS=1 FORCE_CUDA=$([ "$DEVICE" = cuda ] && echo 1 || echo 0)"
        if [ "$DEVICE" = cuda ]; then
            MMCV_HOW="$MMCV_HOW TORCH_CUDA_ARCH_LIST=${ARCH_LIST:-<unset: set TORCH_CUDA_ARCH_LIST>}"
            if [ -n "$NVCC" ]; then MMCV_HOW="$MMCV_HOW with $CUDA_HOME/bin/nvcc"
            else MMCV_HOW="$MMCV_HOW with <no nvcc: install the CUDA toolkit or the nvidia-cuda-nvcc wheel, or set CUDA_HOME>"; fi
            MMCV_HOW="$MMCV_HOW, CPATH=${CUDA_HOME:-<toolkit>}/include first, then the include folders of torch's nvidia-* wheels"
            MMCV_HOW="$MMCV_HOW (about 40 minutes on 2 cores)"
        else
            MMCV_HOW="$MMCV_HOW (6-12 minutes on 2 cores)"
        fi
        [ -n "$CXX_STD" ] && MMCV_HOW="$MMCV_HOW; torch $TORCH_VERSION needs C++20: its setup.py's -std=c++14/17 become -std=$CXX_STD"
        MMCV_HOW="$MMCV_HOW; the wheel is kept in $CACHE_DIR"
    fi
fi
print_plan() {
    printf '[setup] plan: stack %s, device %s (%s), %s\n' "$STACK" "$DEVICE" "$WHY" "$TORCH_WHAT"
    printf '  1/6 virtual environment %s (%s)\n' "$VENV" "$([ -x "$VENV/bin/python" ] && echo exists || echo 'create it with Python 3.11')"
    printf '  2/6 install %s first: %s\n' "$TORCH_WHAT" "$TORCH_BUILD"
    printf '  3/6 build tools: %s\n' "$(grep -v '^#' "$ROOT/requirements/build.txt" | paste -sd' ' -)"
    printf '  4/6 %s==%s with compiled %s ops: %s\n' "$MMCV_DIST" "$MMCV_VERSION" "$([ "$DEVICE" = cuda ] && echo CUDA || echo CPU)" "$MMCV_HOW"
    printf '  5/6 requirements/%s.txt, runtime.txt, tests.txt%s, this package (editable), constraints %s\n' "$STACK" "${EXTRA_NAMES[*]:+, extras ${EXTRA_NAMES[*]}}" "${CONSTRAINTS#$ROOT/}"
    printf '  6/6 import mmcv.ops and run nms %s, import mmseg.models and mmseg_wsbcn, pip check\n' "$([ "$DEVICE" = cuda ] && echo 'on the GPU' || echo 'on the CPU')"
}
print_plan
if [ "$PLAN" = 1 ]; then
    trap - EXIT
    exit 0
fi
if [ "$DEVICE" = cuda ]; then
    [ -n "$ARCH_LIST" ] || fail "DEVICE=cuda without a GPU that nvidia-smi lists: set TORCH_CUDA_ARCH_LIST (e.g. 9.0 for an H100/H200, 8.0 for an A100)"
fi

# the constraints every pip call gets: the stack's, with this torch (and torchvision)
mkdir -p "$MMCV_WHEEL_DIR"
EFFECTIVE_CONSTRAINTS="$(mktemp "${TMPDIR:-/tmp}/mmseg_wsbcn-constraints.XXXXXX")"
sed -e "s/^torch==.*/torch==$TORCH_VERSION/" -e '/^torchvision==/d' "$CONSTRAINTS" > "$EFFECTIVE_CONSTRAINTS"
[ -n "$TORCHVISION_VERSION" ] && echo "torchvision==$TORCHVISION_VERSION" >> "$EFFECTIVE_CONSTRAINTS"
BUILD_DIR=""
cleanup() { rm -f "$EFFECTIVE_CONSTRAINTS"; [ -z "$BUILD_DIR" ] || rm -rf "$BUILD_DIR"; }
trap 'rc=$?; cleanup; on_exit $rc' EXIT

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
SITE="$("$PYBIN" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

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
torch_is_right() {  # the installed torch is TORCH_VERSION, and a CUDA build when DEVICE=cuda
    # (a CUDA build also runs on the CPU: DEVICE=cpu takes either)
    has_version torch "$TORCH_VERSION" || return 1
    [ "$DEVICE" = cpu ] || "$PYBIN" -c "import sys, torch; sys.exit(torch.version.cuda is None)" 2>/dev/null
}

# ---------------------------------------------------------------- 2. torch
STEP="2/6 install $TORCH_WHAT ($DEVICE) first"
if torch_is_right && { [ "$NEEDS_TORCHVISION" = 0 ] || has_version torchvision "$TORCHVISION_VERSION"; }; then
    log "$STEP: already installed"
else
    log "$STEP"
    TORCH_REQS=("torch==$TORCH_VERSION")
    [ "$NEEDS_TORCHVISION" = 1 ] && TORCH_REQS+=("torchvision==$TORCHVISION_VERSION")
    "${PIP[@]}" install "${TORCH_REQS[@]}" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -c "$EFFECTIVE_CONSTRAINTS" \
        || fail "pip could not install ${TORCH_REQS[*]} (is that wheel reachable by pip? set TORCH_INDEX_URL for another index)"
    torch_is_right || fail "the torch installed is not $([ "$DEVICE" = cuda ] && echo 'a CUDA build of ')$TORCH_VERSION ($("$PYBIN" -c 'import torch; print(torch.__version__)' 2>&1)); set TORCH_INDEX_URL to an index with that build"
fi

# ---------------------------------------------------------------- 3. build tools
STEP="3/6 install build tools (setuptools<81, wheel, ninja)"
if "$PYBIN" -c 'import setuptools, wheel, ninja, pkg_resources, sys; sys.exit(int(setuptools.__version__.split(".")[0]) >= 81)' 2>/dev/null; then
    log "$STEP: already installed"
else
    log "$STEP"
    "${PIP[@]}" install -r "$ROOT/requirements/build.txt" -c "$EFFECTIVE_CONSTRAINTS" || fail "pip install of the build tools failed"
fi

# ---------------------------------------------------------------- 4. mmcv with ops
STEP="4/6 $MMCV_DIST==$MMCV_VERSION with compiled $DEVICE ops"
# mmcv cannot be imported before mmengine is installed (step 5), so check
# for the compiled extension file here and import it in step 6.
mmcv_ext() { "$PYBIN" -c 'import glob, importlib.util, os; s = importlib.util.find_spec("mmcv"); print(*(glob.glob(os.path.join(os.path.dirname(s.origin), "_ext*.so")) if s else []))' 2>/dev/null; }
has_cuda_symbols() { grep -qa '__cudaRegisterFatBinary' "$1"; }  # a .so with CUDA kernels
mmcv_has_ops() {
    local so; so="$(mmcv_ext)"; [ -n "$so" ] || return 1
    [ "$DEVICE" = cpu ] || has_cuda_symbols "$so"
}
wheel_has_ops() {  # wheel_has_ops WHEEL -> 0 when it holds mmcv/_ext*.so (with CUDA kernels on cuda)
    "$PYBIN" - "$1" "$DEVICE" <<'EOF'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
ext = [n for n in z.namelist() if n.startswith('mmcv/_ext') and n.endswith('.so')]
sys.exit(0 if ext and (sys.argv[2] == 'cpu' or b'__cudaRegisterFatBinary' in z.read(ext[0])) else 1)
EOF
}
if has_version "$MMCV_DIST" "$MMCV_VERSION" && mmcv_has_ops; then
    log "$STEP: already installed, with its compiled ops"
else
    mkdir -p "$CACHE_DIR"
    LEGACY="$(ls "$MMCV_WHEEL_DIR"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)"
    if [ -n "$LEGACY" ] && [ "$CACHE_DIR" = "$MMCV_WHEEL_DIR/mmcv-2.1.0/torch2.13.0-cpu" ]; then
        mv "$LEGACY" "$CACHE_DIR/"  # where earlier versions of this script kept it
    fi
    WHEEL="$(ls "$CACHE_DIR"/*.whl 2>/dev/null | head -n 1 || true)"
    if [ -n "$WHEEL" ] && ! wheel_has_ops "$WHEEL"; then
        log "$STEP: discarding $WHEEL (it holds no compiled $DEVICE ops)"
        rm -f "$WHEEL"; WHEEL=""
    fi
    BUILD_DIR="$(mktemp -d)"
    INDEX_URL="$(wheel_index_url)"
    if [ -z "$WHEEL" ] && [ -n "$INDEX_URL" ] && index_has_wheel "$INDEX_URL"; then
        log "$STEP: downloading the fork's prebuilt wheel from $INDEX_URL"
        if "${PIP[@]}" download "$MMCV_DIST==$MMCV_VERSION" --no-deps --only-binary :all: --index-url "$INDEX_URL" -d "$BUILD_DIR/dl" \
                && W="$(ls "$BUILD_DIR"/dl/*.whl 2>/dev/null | head -n 1)" && [ -n "$W" ] && wheel_has_ops "$W"; then
            mv "$W" "$CACHE_DIR/" && WHEEL="$CACHE_DIR/$(basename "$W")"
        else
            log "$STEP: the prebuilt wheel did not download or holds no $DEVICE ops; building from source instead"
        fi
    fi
    if [ -z "$WHEEL" ]; then
        BUILD_ENV=(MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" CFLAGS="-g0")
        if [ "$DEVICE" = cuda ]; then
            [ -n "$NVCC" ] || find_nvcc  # a wheel's nvcc may have come with torch (step 2)
            [ -n "$NVCC" ] || fail "no nvcc: install the CUDA toolkit (or pip install nvidia-cuda-nvcc for your CUDA) and set CUDA_HOME"
            # the toolkit's own headers first (crt/host_defines.h), then the headers
            # that torch's nvidia-* wheels carry (cusparse.h, cudnn.h, ...)
            CPATH_CUDA="$CUDA_HOME/include$(for d in "$SITE"/nvidia/*/include; do [ -d "$d" ] && printf ':%s' "$d"; done)"
            BUILD_ENV+=(FORCE_CUDA=1 CUDA_HOME="$CUDA_HOME" TORCH_CUDA_ARCH_LIST="$ARCH_LIST" CPATH="$CPATH_CUDA${CPATH:+:$CPATH}")
            log "$STEP: building from source with CUDA ops (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST=$ARCH_LIST, $("$NVCC" --version | tail -n 2 | head -n 1)); about 40 minutes on 2 cores"
        else
            BUILD_ENV+=(FORCE_CUDA=0)
            log "$STEP: building from source (6-12 minutes on 2 cores; pip prints 'still running...' meanwhile)"
        fi
        "${PIP[@]}" download "$MMCV_DIST==$MMCV_VERSION" --no-deps --no-binary :all: --no-build-isolation -c "$EFFECTIVE_CONSTRAINTS" -d "$BUILD_DIR/src" \
            || fail "pip could not download the source of $MMCV_DIST==$MMCV_VERSION"
        tar -xzf "$BUILD_DIR"/src/*.tar.gz -C "$BUILD_DIR/src" || fail "could not unpack $(ls "$BUILD_DIR"/src/*.tar.gz)"
        SRC="$(ls -d "$BUILD_DIR"/src/*/ | head -n 1)"
        if [ -n "$CXX_STD" ]; then
            grep -q -- '-std=c++1[47]' "$SRC/setup.py" || fail "$MMCV_DIST $MMCV_VERSION's setup.py asks for no -std=c++14/17; cannot switch it to $CXX_STD for torch $TORCH_VERSION"
            sed -i "s/-std=c++1[47]/-std=$CXX_STD/g" "$SRC/setup.py"
            log "$STEP: torch $TORCH_VERSION's headers need C++20: $MMCV_DIST's setup.py now passes -std=$CXX_STD (mmcv#3341)"
        fi
        env "${BUILD_ENV[@]}" "${PIP[@]}" wheel "$SRC" --no-deps --no-cache-dir --no-build-isolation \
            -c "$EFFECTIVE_CONSTRAINTS" -w "$BUILD_DIR/out" \
            || fail "building $MMCV_DIST==$MMCV_VERSION from source failed (needs gcc, Python headers, torch, setuptools<81, ninja$([ "$DEVICE" = cuda ] && echo ', nvcc and the CUDA headers'))"
        W="$(ls "$BUILD_DIR"/out/*.whl | head -n 1)"
        wheel_has_ops "$W" || fail "the $MMCV_DIST wheel built without its compiled $DEVICE ops (mmcv/_ext*.so missing or without CUDA kernels); not installing it"
        mv "$W" "$CACHE_DIR/" && WHEEL="$CACHE_DIR/$(basename "$W")"
        log "$STEP: built $WHEEL"
    else
        log "$STEP: reusing $WHEEL"
    fi
    "${PIP[@]}" install --no-deps --force-reinstall "$WHEEL" || fail "pip install $WHEEL failed"
    mmcv_has_ops || fail "$MMCV_DIST installed from $WHEEL has no compiled $DEVICE ops; remove that wheel and run again"
fi

# ---------------------------------------------------------------- 5. the rest + this package
STEP="5/6 install the $STACK stack, opencv, pytest${EXTRAS:+, extras ${EXTRA_NAMES[*]-}} and mmseg_wsbcn (editable)"
# The stamp holds the fingerprint of every requirements file (extras included), the package
# metadata and the stack (line 1), and the extras installed (line 2). Extras installed by an
# earlier run stay installed and are updated with the rest when a requirements file changes.
STAMP="$VENV/.mmseg_wsbcn-setup"
FINGERPRINT="$STACK $TORCH_VERSION $(cat "$ROOT"/requirements/*.txt "$ROOT/setup.cfg" "$ROOT/pyproject.toml" 2>/dev/null | cksum)"
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
    "${PIP[@]}" install -r "$STACK_REQS" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" ${EXTRA_REQS[@]+"${EXTRA_REQS[@]}"} -c "$EFFECTIVE_CONSTRAINTS" \
        || fail "pip install of the $STACK stack${EXTRA_NAMES[*]:+ and the extras (${EXTRA_NAMES[*]})} failed"
    "${PIP[@]}" install --no-build-isolation --no-deps -e "$ROOT" || fail "editable install of mmseg_wsbcn failed"
    printf '%s\n%s\n' "$FINGERPRINT" "$(printf '%s\n' ${EXTRA_NAMES[@]+"${EXTRA_NAMES[@]}"} | sort | paste -sd, -)" > "$STAMP"
fi
if [ "$STACK" = onedl ]; then
    # The fork's mmengine resolves `mmseg::` config paths through the distribution name
    # `mmsegmentation`, which the fork's package is not called (docs/get_started.md, "The
    # maintained fork"). Until it is fixed there, an alias package `mmsegmentation` that
    # points at mmseg's configs lets it find them. Nothing else imports it.
    ALIAS="$SITE/mmsegmentation"
    if [ ! -e "$ALIAS/.mim" ]; then
        MMSEG_DIR="$("$PYBIN" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("mmseg").origin))')"
        mkdir -p "$ALIAS"
        printf '%s\n' '"""Alias of mmseg for the fork'"'"'s mmengine, which resolves `mmseg::` config' \
            'paths through a distribution named mmsegmentation (written by mmseg_wsbcn'"'"'s' \
            'tools/setup_env.sh; see its docs/get_started.md)."""' > "$ALIAS/__init__.py"
        ln -sfn "$MMSEG_DIR/.mim" "$ALIAS/.mim"
        log "$STEP: mmseg:: config paths: alias $ALIAS -> $MMSEG_DIR/.mim"
    fi
fi

# ---------------------------------------------------------------- 6. prove it
STEP="6/6 check the environment"
"$PYBIN" - "$DEVICE" <<'EOF' || fail "the environment is incomplete (see the error above); if 'import mmcv.ops' failed, remove $CACHE_DIR and run again"
import sys
import torch, mmcv, mmcv.ops, mmengine, mmseg, mmseg.models, mmseg_wsbcn
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
scores = torch.tensor([0.9, 0.8, 0.7])
where = 'cpu'
if sys.argv[1] == 'cuda':
    if torch.cuda.is_available():
        boxes, scores, where = boxes.cuda(), scores.cuda(), torch.cuda.get_device_name()
    else:
        print('[setup] mmcv was built with CUDA ops, but no GPU is visible here: '
              'nms ran on the CPU only; run this setup again on the GPU machine')
_, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
print(f'[setup] torch {torch.__version__} | {mmcv.__name__} {mmcv.__version__} (nms ok on {where}) | '
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
"${PIP[@]}" check || fail "pip check found broken requirements (above)"
log "done. Activate with: source ${VENV#$ROOT/}/bin/activate"
