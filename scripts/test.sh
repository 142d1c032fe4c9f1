#!/usr/bin/env bash
# Install whatever is missing, then run the whole test suite: ruff, mypy, the serial tests without
# MPI, and the MPI tests under mpirun through pytest-mpi. Extra arguments go to every pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$here/scripts/bootstrap.sh" | tail -n 1)"
py="$venv/bin/python"
source "$here/scripts/mpirun_flags.sh"
cd "$here"
export HPCPIPE_REQUIRE_NATIVE="${HPCPIPE_REQUIRE_NATIVE:-1}"  # the install compiles the kernels
# this clone's code first, whichever clone the shared venv's editable install points at
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=1 MPLBACKEND=Agg PY_COLORS=0

echo "== ruff"
"$py" -m ruff check hpcpipe tests perf

echo "== mypy"
# the packages outside the Pythran kernel sources ([tool.mypy] in pyproject.toml)
"$py" -m mypy

echo "== serial tests"
"$py" -m pytest -p no:cacheprovider -m "not mpi" "$@" tests

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
for n in 3 2; do
    echo "== MPI tests under mpirun -n $n"
    # Rank 0 reports; the other ranks' pytest output goes to a log shown only on failure.
    if ! mpirun "${MPIRUN_FLAGS[@]}" -n "$n" "$py" "$here/scripts/mpi_pytest.py" "$logs" \
            -p no:cacheprovider --with-mpi -m mpi "$@" tests; then
        for f in "$logs"/rank-*.log; do echo "---- $f"; tail -n 50 "$f"; done
        exit 1
    fi
done

# Opt-in: the pool and production MPI tests at many more ranks than cores, e.g.
# HPCPIPE_TEST_MANY_RANKS="16 32" (about 2 and 10 minutes on 2 busy cores: not in CI's default).
for n in ${HPCPIPE_TEST_MANY_RANKS:-}; do
    echo "== MPI tests of the pool and the production under mpirun -n $n"
    if ! mpirun "${MPIRUN_FLAGS[@]}" -n "$n" "$py" "$here/scripts/mpi_pytest.py" "$logs" \
            -p no:cacheprovider --with-mpi -m mpi "$@" tests/test_pool.py \
            tests/test_production.py; then
        for f in "$logs"/rank-*.log; do echo "---- $f"; tail -n 50 "$f"; done
        exit 1
    fi
done
