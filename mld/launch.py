"""Start one workflow job: run `mld` on its GPUs with its execution settings.

    python -m mld.launch --gpus 2 --threads 16 --set train.num_workers=8 -- \
        train --run-config results/configs/runs/r/seed0.yaml --out results/runs/r/seed0

A job's config file holds only what defines its result (the `job_config` rule writes it, and
Snakemake reruns a job when it changes); the engine reads it once. How the job executes (GPUs,
threads, loader workers, device, logging) comes from the job's resources on the command line, so
changing them never reruns a finished job: the launcher passes them on to the command as
`--set KEY=VALUE`. With more than one GPU the command runs under torchrun, one process per GPU,
and the job's CPU threads and loader workers are divided among the processes.

`--time-limit-min T --stop-margin-min M` sends the job's processes SIGUSR1 M minutes before the
job's time limit T (inside a Slurm job), so the engine saves its checkpoint and exits before Slurm ends the job; the
resubmitted job resumes from it. Slurm's own `--signal` cannot do this: it signals every process
of the job step, Snakemake's included, which dies of SIGUSR1 and takes the step down with it.
Signals the launcher receives (SIGTERM at preemption, SIGUSR1) are passed on to the processes.

torchrun starts each process in a session of its own, out of reach of a signal to the launcher's
process group: it is told to pass SIGUSR1 on too (by default it passes SIGTERM, SIGINT, SIGHUP
and SIGQUIT), and gives its processes `SHUTDOWN_TIMEOUT_S` to save their checkpoint before it
kills them with their loader workers; it does the same to every process when one of them fails.
A job stopped by a signal the launcher passed on exits with 128 + that signal, as a one-process
job does (torchrun itself exits with 1).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from typing import Sequence

from mld.engine.config import EXECUTION_KEYS, parse_execution_setting

# Execution settings counted per job that each of a job's processes gets a share of.
PER_JOB_KEYS = ("train.num_workers",)
# The signals torchrun passes on to its processes: its defaults and the early stop's SIGUSR1.
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
# Seconds torchrun's processes get to checkpoint and exit after a stop signal (or after another
# process failed) before it kills them: a checkpoint of the largest paper model is written in
# seconds; a process stuck in a collective with a dead peer never finishes on its own.
SHUTDOWN_TIMEOUT_S = 120


def process_share(total: int, processes: int) -> int:
    """Each process's share of a job's threads or workers (at least 1 when the job has any)."""
    return max(1, total // processes) if total > 0 else 0


def setting_flags(settings: Sequence[str], processes: int) -> list[str]:
    """`--set KEY=VALUE` for each execution setting (refused unless one of EXECUTION_KEYS, with a
    ValueError), per-job counts divided among processes."""
    flags = []
    for text in settings:
        key, value = parse_execution_setting(text)
        flags += ["--set", f"{key}={process_share(value, processes)}" if key in PER_JOB_KEYS else text]
    return flags


def stop_after(time_limit_min: float, margin_min: float) -> float:
    """Minutes after which to stop: the margin before the limit, or half the limit when it is short."""
    return time_limit_min - margin_min if time_limit_min > 2 * margin_min else time_limit_min / 2


def command(gpus: int, arguments: Sequence[str]) -> list[str]:
    """`python -m mld ARGS`, or under torchrun with one process per GPU (DDP) when gpus > 1."""
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}",
                f"--signals-to-handle={TORCHRUN_SIGNALS}", f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}",
                "-m", "mld", *arguments]
    return [sys.executable, "-m", "mld", *arguments]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mld.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=0, help="GPUs of the job (more than 1: torchrun)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the job, shared by its processes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help=f"an execution setting ({', '.join(EXECUTION_KEYS)})")
    parser.add_argument("--time-limit-min", type=float, default=None, metavar="T",
                        help="the job's time limit; inside a Slurm job the engine is stopped before it")
    parser.add_argument("--stop-margin-min", type=float, default=5.0, metavar="M",
                        help="stop (SIGUSR1: checkpoint, exit) M minutes before the time limit")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="-- then the mld command and its arguments")
    args = parser.parse_args(argv)
    arguments = list(args.arguments[1:] if args.arguments[:1] == ["--"] else args.arguments)
    if not arguments:
        parser.error("give the mld command after --")
    processes = max(1, args.gpus)
    try:
        arguments += setting_flags(args.settings, processes)
    except ValueError as error:
        parser.error(str(error))
    os.environ["OMP_NUM_THREADS"] = str(process_share(args.threads, processes))
    # Outside Slurm nothing ends the job at its time limit, so nothing stops it early either.
    stop = None
    if args.time_limit_min is not None and os.environ.get("SLURM_JOB_ID"):
        stop = stop_after(args.time_limit_min, args.stop_margin_min)
    return supervise(command(args.gpus, arguments), stop)


def supervise(full: Sequence[str], stop_after_min: float | None) -> int:
    """Run the command in its own process group; signal the group at the deadline; return its
    status (128 + the signal passed on, when the command failed after one)."""
    sys.stdout.flush()
    child = subprocess.Popen(list(full), start_new_session=True)
    forwarded: list[int] = []

    def forward(signal_number: int, _frame: object = None) -> None:
        forwarded.append(signal_number)
        try:
            os.killpg(child.pid, signal_number)
        except ProcessLookupError:
            pass

    for signal_number in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(signal_number, forward)
    timer = None
    if stop_after_min is not None:
        timer = threading.Timer(max(0.0, stop_after_min * 60), forward, args=(signal.SIGUSR1,))
        timer.daemon = True
        timer.start()
    status = child.wait()
    if timer is not None:
        timer.cancel()
    # A child ended by a signal reports -N; the shell convention is 128 + N.
    if status < 0:
        return 128 - status
    return 128 + forwarded[0] if status and forwarded else status


if __name__ == "__main__":
    sys.exit(main())
