#!/usr/bin/env bash
# Install everything hpcpipe needs, idempotently, and print the virtual environment's path
# on the last line of standard output.
#
# Steps (each skipped when already done):
#   1. MPI and parallel HDF5: use what is on the PATH (an HPC cluster with modules loaded);
#      otherwise, when running as root on Debian/Ubuntu, apt-get install them.
#   2. A virtual environment, cached outside the clone and keyed on the requirements files,
#      with the wheels, h5py compiled against parallel HDF5, and pythran.
#   3. hpcpipe itself (editable), which compiles the Pythran kernels (on a first install, while
#      h5py compiles in the background).
#
# Environment variables:
#   HPCPIPE_VENV          where the virtual environment lives (default: a cache directory)
#   HPCPIPE_PYTHON        the Python interpreter to build it from (default: python3)
#   HPCPIPE_NO_APT=1      never call apt-get (use the MPI and HDF5 already on the PATH)
#   HDF5_DIR              a parallel HDF5 installation prefix (h5py's own variable)
#   HDF5_PKGCONFIG_NAME   the pkg-config name of parallel HDF5 (default: hdf5-openmpi if known)
#   HPCPIPE_NATIVE=1      compile the kernels with -march=native (not portable to other CPUs)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 2; }

# --- 1. MPI and parallel HDF5 -------------------------------------------------------------
have_parallel_hdf5() {
    if [ -n "${HDF5_DIR:-}" ] && [ -f "${HDF5_DIR}/include/H5pubconf.h" ]; then
        grep -q 'define H5_HAVE_PARALLEL 1' "${HDF5_DIR}/include/H5pubconf.h"
        return
    fi
    command -v pkg-config >/dev/null 2>&1 || return 1
    pkg-config --exists "${HDF5_PKGCONFIG_NAME:-hdf5-openmpi}"
}

if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1 || ! have_parallel_hdf5; then
    if [ "${HPCPIPE_NO_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing Open MPI and parallel HDF5 with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq openmpi-bin libopenmpi-dev libhdf5-openmpi-dev pkg-config >&2
    else
        die "MPI (mpicc, mpirun) and a parallel HDF5 are needed. On a cluster load their modules
  (for example: module load openmpi hdf5-parallel) and set HDF5_DIR to the HDF5 prefix, or
  on Debian/Ubuntu run as root: apt-get install openmpi-bin libopenmpi-dev libhdf5-openmpi-dev pkg-config"
    fi
fi
# headless Chromium for the browser test of `hpcpipe serve`'s page (optional: the test skips
# without it)
if ! command -v chromium >/dev/null 2>&1 && [ "${HPCPIPE_NO_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null 2>&1; then
    log "installing chromium with apt-get (browser test of the TAP service's page)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq chromium; } >&2 \
        || log "chromium could not be installed; the browser test will be skipped"
fi
if [ -z "${HDF5_DIR:-}" ] && [ -z "${HDF5_PKGCONFIG_NAME:-}" ]; then
    export HDF5_PKGCONFIG_NAME=hdf5-openmpi
fi

# A PostgreSQL server for the shared-APDB test (tests/test_apdb_scaling.py starts its own on
# a Unix socket; without the binaries that test is skipped): only when missing, as root
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
    if [ "${HPCPIPE_NO_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing the PostgreSQL server with apt-get (for the APDB tests)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq postgresql >&2
    else
        log "no PostgreSQL server (initdb): the PostgreSQL APDB test will be skipped"
    fi
fi
# Source Extractor: the field's standard tool the photometry tests and perf/bench_single_frame
# compare with (optional: those tests skip without it)
if ! command -v source-extractor >/dev/null 2>&1 && [ "${HPCPIPE_NO_APT:-0}" != 1 ] \
        && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Source Extractor with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq source-extractor >&2 \
        || { apt-get update -qq >&2 && apt-get install -y -qq source-extractor >&2; } \
        || log "warning: source-extractor could not be installed (its comparisons will skip)"
fi
# SWarp: the field's standard resampler and coadder, the peer of perf/bench_coadd.py
# (optional: the benchmark needs it, no test does)
if ! command -v SWarp >/dev/null 2>&1 && ! command -v swarp >/dev/null 2>&1 \
        && [ "${HPCPIPE_NO_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null 2>&1; then
    log "installing SWarp with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq swarp >&2 \
        || { apt-get update -qq >&2 && apt-get install -y -qq swarp >&2; } \
        || log "warning: swarp could not be installed (perf/bench_coadd.py will not run)"
fi

# --- 2. The virtual environment -----------------------------------------------------------
python="${HPCPIPE_PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || die "no Python interpreter '$python' (set HPCPIPE_PYTHON)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "hpcpipe needs Python 3.10 or newer; '$python' is $("$python" -V 2>&1)"
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
recipe=1  # bump when the steps below change
key="$( (echo "recipe $recipe"; cat "$here"/requirements/*.txt) | sha256sum | cut -c1-12)"
venv="${HPCPIPE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hpcpipe/venv-py${pyver}-${key}}"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@" >&2; }

h5py_job=""
if [ ! -f "$venv/.hpcpipe-complete" ]; then
    log "building the virtual environment in $venv (h5py compiles against parallel HDF5 while the kernels compile: minutes to tens of minutes, the longest step)"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    pip install -U pip
    # What h5py's build needs first (numpy and mpi4py as runtime.txt pins them) ...
    pip install 'setuptools>=70' wheel 'Cython>=3.0' 'pkgconfig>=1.5' \
        $(grep -E '^(numpy|mpi4py)\b' "$here/requirements/runtime.txt")
    # ... then h5py against parallel HDF5 (without build isolation, so that the mpi4py wheel
    # is used) is built into a wheel in the background, while the other wheels install and
    # the kernels compile; it is installed at the end.
    rm -rf "$venv/h5py-wheel"
    CC=mpicc HDF5_MPI=ON "$venv/bin/python" -m pip --disable-pip-version-check wheel -q \
        --no-deps --no-build-isolation --no-binary=h5py -w "$venv/h5py-wheel" 'h5py==3.16.0' \
        >"$venv/h5py-build.log" 2>&1 &
    h5py_job=$!
    trap '[ -n "$h5py_job" ] && kill "$h5py_job" 2>/dev/null || true' EXIT
    pip install -r "$here/requirements/runtime.txt" -r "$here/requirements/test.txt"
    # Pythran without its setuptools<60 pin (Python 3.11): it compiles fine with a recent one.
    pip install --no-deps 'pythran==0.19.0' 'gast~=0.7.0' 'beniget~=0.5.0' 'ply>=3.4'
fi

# --- 3. hpcpipe itself (compiles the Pythran kernels) -----------------------------------------
log "installing hpcpipe from $here (compiling the Pythran kernels)"
(cd "$here" && pip install --no-build-isolation --no-deps -e .)

if [ -n "$h5py_job" ]; then
    log "waiting for the h5py build (log: $venv/h5py-build.log)"
    wait "$h5py_job" || { cat "$venv/h5py-build.log" >&2; die "h5py could not be built; see the messages above"; }
    h5py_job=""
    pip install --no-deps --force-reinstall "$venv"/h5py-wheel/h5py-*.whl
    rm -rf "$venv/h5py-wheel"
    "$venv/bin/python" - <<'PY' >&2 || die "h5py was built without MPI support; see $venv/h5py-build.log"
import h5py, sys
sys.exit(0 if h5py.get_config().mpi else 1)
PY
    touch "$venv/.hpcpipe-complete"
fi
echo "$venv"
