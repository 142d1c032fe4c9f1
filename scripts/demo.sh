#!/usr/bin/env bash
# Install whatever is missing, then run the built-in demo under MPI on this machine's cores.
# Extra arguments go to `hpcpipe demo` (see `hpcpipe demo --help`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$here/scripts/bootstrap.sh" | tail -n 1)"
source "$here/scripts/mpirun_flags.sh"
# one rank per core for the workers, plus the master, which mostly sleeps while it waits
ranks="${HPCPIPE_RANKS:-$(( $(nproc) + 1 ))}"
# this clone's code first, whichever clone the shared venv's editable install points at
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=1 MPLBACKEND=Agg
echo "== hpcpipe demo on $ranks MPI ranks (venv: $venv)"
exec mpirun "${MPIRUN_FLAGS[@]}" -n "$ranks" "$venv/bin/python" -m hpcpipe demo "$@"
