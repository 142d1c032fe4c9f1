"""Batch submission: fill a job template from ``jobs/`` and hand it to the scheduler.

``hpcpipe submit --batch-type slurm --nodes 4 --procs-per-node 32 --time-per-unit 120 ...
DRIVER REPO --id ...`` writes a SLURM script that runs ``srun python -m hpcpipe DRIVER REPO
--id ...`` and submits it with ``sbatch``. PBS scripts use ``mpiexec`` under ``qsub``;
``smp`` runs the command at once with ``mpiexec`` on this machine, ``none`` runs it directly.

The script does not export the submitting shell's whole environment (SLURM's default, which
breaks on exported bash functions): it sets the few variables hpcpipe needs explicitly
(:func:`job_environment`). The walltime is given (``--time``) or estimated from the seconds
per unit, the number of units and the ranks (:func:`estimate_walltime`); one of the two is
required, since a forgotten walltime means the scheduler's short default.

Everything that lands in the script is checked before anything is written (:func:`check_request`
: a :class:`SubmitError`, exit status 2, and no script): the job name, the queue and the
account use letters, digits, ``.``, ``_`` and ``-`` (a queue may list several, separated by
``,``); a ``--batch-option`` is one scheduler option (it starts with ``-``) of printable
characters; no value or path may hold a newline or another control character, which would
end the directive line and turn the rest into a shell command (sbatch and qsub also stop
reading directives at the first command, silently dropping the ones after it).

Campaigns: the script exports the job's end (``HPCPIPE_JOB_END_TIME``: SLURM's
``SLURM_JOB_END_TIME``, or the start plus the walltime) so that the run stops handing out units
that would not fit and exits with 75 ("more to do"), and asks for ``SIGUSR1`` some minutes
before the end (SLURM ``--signal=B:USR1@MARGIN``, forwarded to the ranks; under PBS the script
sends it itself). ``--chain N`` (:func:`submit_chain`) submits N jobs, each depending on the one
before (``sbatch --dependency=afterany:ID``, ``qsub -W depend=afterany:ID``), each resuming
where the last stopped; every job after the first starts with a check (``hpcpipe status
--check OUT``) and ends at once when the campaign has nothing left to do.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from hpcpipe.comm.walltime import MORE_TO_DO_EXIT
from hpcpipe.errors import HpcpipeError
from hpcpipe.io.atomic import atomic_path

__all__ = ["BatchRequest", "SubmitError", "NAME_CHARACTERS", "estimate_walltime", "format_walltime",
           "parse_walltime", "job_environment", "make_script", "submit", "submit_chain",
           "signal_margin", "JOBS_DIR"]

#: The directory of the job templates (``HPCPIPE_JOBS_DIR`` overrides it).
JOBS_DIR = Path(os.environ.get("HPCPIPE_JOBS_DIR",
                               Path(__file__).resolve().parents[2] / "jobs"))

#: What a job name, queue or account may hold (documented in the module and ``--help``).
NAME_CHARACTERS = "letters, digits, '.', '_' and '-'"
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_QUEUE_RE = re.compile(r"[A-Za-z0-9_.\-]+(?:,[A-Za-z0-9_.\-]+)*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_OPTION_RE = re.compile(r"-[\x21-\x7e][\x20-\x7e]*")

_CARRIED = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV", "HDF5_DIR", "MPLBACKEND")


class SubmitError(HpcpipeError, ValueError):
    """A submission request that cannot work (bad option, failed submit command); ``status``
    is the exit status of a run that ``smp``/``none`` ran and that failed."""

    status: int | None = None


def parse_walltime(text: str) -> int:
    """Seconds in a walltime: ``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS`` or whole minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise SubmitError(f"--time {text!r} is not a walltime (D-HH:MM:SS, HH:MM:SS, MM:SS "
                          "or minutes)")
    days, a, b, c = match.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if len(parts) == 1:
        seconds = parts[0] * 60  # SLURM reads a bare number as minutes
    elif len(parts) == 2:
        seconds = parts[0] * 60 + parts[1]
    else:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    seconds += int(days or 0) * 86400
    if seconds <= 0:
        raise SubmitError(f"--time {text!r} must be longer than zero")
    return seconds


def format_walltime(seconds: float) -> str:
    """``HH:MM:SS`` (hours may exceed 24), rounded up to the minute."""
    minutes = max(1, math.ceil(seconds / 60.0))
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def estimate_walltime(seconds_per_unit: float, units: int, ranks: int,
                      startup: float = 300.0, margin: float = 1.25) -> float:
    """A walltime in seconds for ``units`` units over ``ranks`` ranks (one is the master).

    ``margin`` covers uneven units; ``startup`` covers the launch, imports and I/O.
    """
    if seconds_per_unit <= 0 or units < 0 or ranks < 1:
        raise SubmitError("need a positive --time-per-unit, --units >= 0 and at least 1 rank")
    workers = max(1, ranks - 1)
    rounds = math.ceil(units / workers)
    return startup + margin * rounds * seconds_per_unit


def signal_margin(walltime_seconds: float) -> int:
    """Seconds before the walltime at which the job is sent SIGUSR1: 5% of the walltime,
    at least a minute and at most ten (never more than half the walltime)."""
    margin = min(600.0, max(60.0, 0.05 * walltime_seconds))
    return max(1, int(min(margin, 0.5 * walltime_seconds)))


def job_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables a job needs: search paths, the virtual environment, ``HPCPIPE_*``.

    Bash functions (``BASH_FUNC_*``) and everything else are left out; ``OMP_NUM_THREADS``
    defaults to 1 (the MPI ranks fill the cores).
    """
    env = os.environ if environ is None else environ
    out = {k: env[k] for k in _CARRIED if k in env}
    out.update({k: v for k, v in env.items() if k.startswith("HPCPIPE_")})
    out["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    return out


@dataclass
class BatchRequest:
    """Everything a job script needs.

    ``command`` is the program and its arguments as run on every rank.
    """

    batch_type: str
    job: str
    command: list[str]
    nodes: int = 1
    procs_per_node: int = 1
    walltime_seconds: float = 3600.0
    queue: str | None = None
    account: str | None = None
    extra_options: list[str] = field(default_factory=list)
    log_dir: Path = Path("batch")
    workdir: Path = field(default_factory=Path.cwd)
    environment: dict[str, str] = field(default_factory=job_environment)
    #: A command run before the driver: if it exits with 0 the job has nothing to do and
    #: ends (the chained jobs of a campaign: ``hpcpipe status --check OUT``).
    precheck: list[str] | None = None
    #: "job i of N" in the job's log (campaigns).
    chain_text: str = ""

    def __post_init__(self) -> None:
        if self.batch_type not in ("slurm", "pbs", "smp", "none"):
            raise SubmitError(f"--batch-type {self.batch_type!r}: choose slurm, pbs, smp or none")
        check_request(self)
        if self.nodes < 1 or self.procs_per_node < 1:
            raise SubmitError(f"--nodes {self.nodes} and --procs-per-node "
                              f"{self.procs_per_node} must be positive")

    @property
    def ranks(self) -> int:
        return self.nodes * self.procs_per_node


def _no_control(option: str, value: str) -> None:
    match = _CONTROL_RE.search(value)
    if match:
        raise SubmitError(f"{option} {value!r}: holds the control character "
                          f"{match.group()!r} (a newline would end the directive line and run "
                          "the rest as a shell command)")


def check_request(request: BatchRequest) -> None:
    """Check every value that lands in the job script.

    Raises
    ------
    SubmitError
        Naming the option: a name (``--job``, ``--queue``, ``--account``) outside
        :data:`NAME_CHARACTERS`, a ``--batch-option`` that is not one printable option
        starting with ``-``, or a control character (newline...) in any value or path.
    """
    names = [("--job", request.job, _NAME_RE), ("--queue", request.queue, _QUEUE_RE),
             ("--account", request.account, _NAME_RE)]
    for option, value, pattern in names:
        if value is None:
            continue
        _no_control(option, value)
        if not pattern.fullmatch(value):
            extra = " (several queues: separated by ',')" if option == "--queue" else ""
            raise SubmitError(f"{option} {value!r}: use {NAME_CHARACTERS}{extra}")
    for value in request.extra_options:
        _no_control("--batch-option", value)
        if not _OPTION_RE.fullmatch(value):
            raise SubmitError(f"--batch-option {value!r}: give one scheduler option, starting "
                              "with '-', of printable characters (--batch-option=--mem=8G)")
    _no_control("--batch-output", str(request.log_dir))
    _no_control("the working directory", str(request.workdir))
    for name, value in request.environment.items():
        _no_control(f"the environment variable {name}", value)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SubmitError(f"the environment variable name {name!r} cannot be exported")
    for arg in [*request.command, *(request.precheck or ())]:
        _no_control("the driver's argument", arg)
    _no_control("the chain", request.chain_text)


def make_script(request: BatchRequest) -> str:
    """The job script for a SLURM or PBS request (checked again: see :func:`check_request`)."""
    check_request(request)
    if request.batch_type not in ("slurm", "pbs"):
        raise SubmitError(f"batch type {request.batch_type!r} has no job script")
    template = Template((JOBS_DIR / f"{request.batch_type}.sh.template").read_text())
    directive = "#SBATCH" if request.batch_type == "slurm" else "#PBS"
    queue_flag = "--partition=" if request.batch_type == "slurm" else "-q "
    queue_line = f"{directive} {queue_flag}{request.queue}\n" if request.queue else ""
    if request.account:
        account_flag = "--account=" if request.batch_type == "slurm" else "-A "
        queue_line += f"{directive} {account_flag}{request.account}\n"
    extra = "".join(f"{directive} {opt}\n" for opt in request.extra_options)
    environment = "\n".join(f"export {k}={shlex.quote(v)}"
                            for k, v in sorted(request.environment.items()))
    precheck = ""
    if request.precheck:
        precheck = (f"if {shlex.join(request.precheck)}; then\n"
                    f"    echo \"hpcpipe job {request.job}: nothing left to do, the campaign is "
                    "complete\"\n    exit 0\nfi")
    return template.substitute(
        job=request.job,
        made_on=datetime.datetime.now().isoformat(timespec="seconds"),
        nodes=request.nodes,
        procs_per_node=request.procs_per_node,
        ranks=request.ranks,
        walltime=format_walltime(request.walltime_seconds),
        walltime_seconds=int(60 * math.ceil(request.walltime_seconds / 60.0)),
        signal_margin=signal_margin(60 * math.ceil(request.walltime_seconds / 60.0)),
        precheck=precheck,
        chain_text=request.chain_text,
        log_dir=shlex.quote(str(Path(request.log_dir).resolve())),
        queue_line=queue_line,
        extra_lines=extra,
        environment=environment,
        workdir=shlex.quote(str(Path(request.workdir).resolve())),
        srun_options="--kill-on-bad-exit=1 ",
        command=shlex.join(request.command),
    )


def _dependency(batch_type: str, job_id: str) -> list[str]:
    """The submit command's options making a job wait for ``job_id`` to end, however."""
    if batch_type == "slurm":
        return [f"--dependency=afterany:{job_id}"]
    return ["-W", f"depend=afterany:{job_id}"]


def submit(request: BatchRequest, dry_run: bool = False, after: str | None = None,
           script_name: str | None = None, show_script: bool = True) -> str | None:
    """Write the script and submit it (or, for ``smp``/``none``, run the command now).

    Parameters
    ----------
    after : str, optional
        The id of a job this one waits for (``afterany``: however it ends).
    script_name : str, optional
        The script's file name in the log directory (default ``<job>.<batch type>.sh``).
    show_script : bool
        Print the script in a dry run (else only the submit command).

    Returns
    -------
    str or None
        The scheduler's job id (SLURM, PBS), or None for ``smp``/``none`` and dry runs.
    """
    if request.batch_type in ("smp", "none"):
        if request.batch_type == "smp":
            argv = ["mpiexec", "-n", str(request.procs_per_node), *request.command]
        else:
            argv = list(request.command)
        print(shlex.join(argv))
        if dry_run:
            return None
        code = subprocess.call(argv, env={**os.environ, **request.environment})
        if code:
            error = SubmitError(f"the run exited with status {code}")
            error.status = code
            raise error
        return None
    text = make_script(request)
    log_dir = Path(request.log_dir)
    script = log_dir / (script_name or f"{request.job}.{request.batch_type}.sh")
    submit_cmd = ["sbatch" if request.batch_type == "slurm" else "qsub",
                  *(_dependency(request.batch_type, after) if after else ()), str(script)]
    if dry_run:
        if show_script:
            print(text)
        print("# submit with: " + shlex.join(submit_cmd))
        return None
    log_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(script) as tmp:
        tmp.write_text(text)
        tmp.chmod(0o755)
    try:
        proc = subprocess.run(submit_cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SubmitError(f"{submit_cmd[0]} is not on the PATH: is this a {request.batch_type} "
                          f"login node? The script is at {script}") from None
    if proc.returncode:
        raise SubmitError(f"{shlex.join(submit_cmd)} failed ({proc.returncode}): "
                          f"{proc.stderr.strip() or proc.stdout.strip()}")
    if request.batch_type == "slurm":
        match = re.search(r"Submitted batch job (\d+)", proc.stdout)
        job_id = match.group(1) if match else proc.stdout.strip()
    else:
        job_id = proc.stdout.strip()
    print(f"submitted {script} as job {job_id}", file=sys.stderr)
    return job_id


def submit_chain(request: BatchRequest, count: int, precheck: list[str] | None = None,
                 dry_run: bool = False) -> list[str | None]:
    """Submit a campaign: ``count`` jobs, each waiting for the one before to end (however it
    ends: ``afterany``), each resuming the run; the jobs after the first run ``precheck``
    first and end at once if it exits with 0 (nothing left to do).

    With ``smp``/``none`` the command runs up to ``count`` times, again while it exits with
    75 (more to do).

    Returns
    -------
    list
        The job ids (None for dry runs and ``smp``/``none``).
    """
    if count < 1:
        raise SubmitError(f"--chain {count}: give at least 1 job")
    if request.batch_type in ("smp", "none"):
        return _run_chain_here(request, count, dry_run)
    ids: list[str | None] = []
    previous: str | None = None
    follower = dataclasses.replace(request, precheck=precheck)
    for number in range(1, count + 1):
        job = request if number == 1 else follower
        job = dataclasses.replace(job, chain_text=f" ({number} of {count})" if count > 1
                                  else "")
        name = (f"{request.job}.{request.batch_type}.sh" if number == 1 else
                f"{request.job}.next.{request.batch_type}.sh")
        job_id = submit(job, dry_run=dry_run, after=previous, script_name=name,
                        show_script=number <= 2)
        ids.append(job_id)
        previous = job_id if job_id is not None else f"<job {number}>"
    return ids


def _run_chain_here(request: BatchRequest, count: int, dry_run: bool) -> list[str | None]:
    """``smp``/``none`` campaigns: run again while the run exits with 75 (more to do)."""
    for number in range(1, count + 1):
        try:
            submit(request, dry_run=dry_run)
            return [None] * number
        except SubmitError as exc:
            if exc.status != MORE_TO_DO_EXIT or number == count:
                raise
            print(f"run {number} of {count}: more to do, running again", file=sys.stderr)
    return [None] * count
