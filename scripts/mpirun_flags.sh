# Sourced by the run scripts: the flags mpirun needs on this machine, in MPIRUN_FLAGS.
# --oversubscribe lets a test run more ranks than cores; Open MPI refuses root without
# --allow-run-as-root. Other MPI implementations (MPICH, Cray) need neither.
MPIRUN_FLAGS=()
if mpirun --version 2>/dev/null | grep -qi "open mpi"; then
    MPIRUN_FLAGS+=(--oversubscribe)
    if [ "$(id -u)" = 0 ]; then
        MPIRUN_FLAGS+=(--allow-run-as-root)
    fi
fi
