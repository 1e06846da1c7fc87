"""One training job, and many of them on Ray: the one way a script trains agents.

A :class:`TrainJob` says everything a run needs (algorithm, env id, env kwargs over the config's,
seed, steps, where it goes and what to do with what is already there). Its run directory is
``<logdir>/<algo>_<env>[_<label>]_s<seed>`` unless ``run_name`` is given. :func:`run_jobs` runs a
list of them as Ray tasks of one CPU each (experiments.fanout) and returns their run directories
in order. experiments.beyond, report, bench, serve and sweep all train through here.

Resume policies (``resume``):

- ``"fail"``: a fresh run; a non-empty run directory is an error (experiments.train's default);
- ``"overwrite"``: a fresh run; whatever is in the run directory is cleared first;
- ``"continue"``: keep a finished run as it is (its final model and evaluations exist); continue a
  killed one from its newest intact checkpoint; start afresh otherwise. A run of other settings
  in the directory (run.json's identity) is an error, found by :func:`check_jobs` before any
  work. Rerunning a script with ``continue`` after a kill finishes exactly the runs that were
  missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESUME_POLICIES = ("fail", "overwrite", "continue")


@dataclass(frozen=True)
class TrainJob:
    """One training run, as a value (picklable for Ray)."""

    algo: str
    env_id: str
    seed: int
    logdir: str
    total_timesteps: int | None = None  # None: the config's n_timesteps
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # laid over the config's env_kwargs
    overrides: dict[str, Any] = field(default_factory=dict)  # hyperparameters and run keys (run_config)
    label: str = ""  # part of the run name (an objective, a trial id)
    run_name: str | None = None  # the run directory's name, replacing the scheme above
    resume: str = "fail"  # one of RESUME_POLICIES
    config_path: str | None = None  # None: experiments/configs/<algo>.yaml

    def __post_init__(self) -> None:
        if self.resume not in RESUME_POLICIES:
            raise ValueError(f"TrainJob.resume must be one of {list(RESUME_POLICIES)}, got {self.resume!r}")

    @property
    def name(self) -> str:
        """The run directory's name."""
        if self.run_name:
            return self.run_name
        label = f"_{self.label}" if self.label else ""
        return f"{self.algo}_{self.env_id.split('/')[-1]}{label}_s{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.logdir) / self.name

    def config(self, build_env: bool = False) -> dict[str, Any]:
        """The job's resolved, validated configuration (experiments.run_config)."""
        from experiments.run_config import resolve_config

        overrides = {**self.overrides, "env_kwargs": self.env_kwargs}
        if self.total_timesteps is not None:
            overrides["n_timesteps"] = self.total_timesteps
        return resolve_config(self.algo, self.env_id, self.config_path, overrides, where=f"job {self.name}",
                              build_env=build_env)


def finished(run_dir: Path) -> bool:
    """A run whose results are all written: its final model and its evaluations."""
    return (run_dir / "final_model.zip").is_file() and (run_dir / "evaluations.json").is_file()


def run_job(job: TrainJob, on_validation: Callable[[dict], None] | None = None, verbose: int = 0) -> Path:
    """Train one job under its resume policy; its run directory."""
    from experiments import train
    from experiments.checkpoints import latest_intact

    run_dir = job.run_dir
    resume = False
    if job.resume == "continue":
        if finished(run_dir):
            return run_dir
        resume = latest_intact(run_dir) is not None
    cfg = job.config()
    return train.train(job.algo, job.env_id, cfg, cfg["n_timesteps"], job.seed, Path(job.logdir), resume=resume,
                       run_name=job.name, progress_bar=False, verbose=verbose,
                       overwrite=job.resume == "overwrite" or (job.resume == "continue" and not resume),
                       on_validation=on_validation)


def run_jobs(jobs: Sequence[TrainJob], num_cpus: int | None = None, address: str | None = None) -> list[Path]:
    """Every job as a Ray task of one CPU (experiments.fanout); their run directories, in order."""
    from experiments import fanout

    names = [job.run_dir for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError("two jobs share a run directory: " + ", ".join(sorted({str(n) for n in names
                                                                               if names.count(n) > 1})))
    return fanout.run_all(run_job, jobs, num_cpus, address)


def check_jobs(jobs: Sequence[TrainJob]) -> None:
    """Resolve every job's configuration and build its env once, before any training: a bad
    value fails here as a ConfigError naming the job. A ``continue`` job whose run directory
    already holds a run of other settings (run.json's identity: everything but the number of
    steps) fails here as a RunDirError naming the keys: it would otherwise be kept, or resumed, as
    if it were this job's."""
    seen: set[tuple] = set()
    for job in jobs:
        key = (job.algo, job.env_id, job.config_path, repr(sorted(job.env_kwargs.items())),
               repr(sorted(job.overrides.items())), job.total_timesteps)
        if key not in seen:
            seen.add(key)
            job.config(build_env=True)
        if job.resume == "continue":
            check_recorded_run(job)


def check_recorded_run(job: TrainJob) -> None:
    """RunDirError when ``job``'s run directory holds a run.json of another experiment than the
    job's. The number of steps is not compared: a kept run is reused at its own (run.json says how
    many), as a study re-evaluating its agents without repeating --total-timesteps expects."""
    from experiments.run_records import RunDirError, identity_differences, recorded_identity, run_identity

    old = recorded_identity(job.run_dir)
    if old is None:
        return
    diff = identity_differences(old, run_identity(job.algo, job.env_id, job.config(), job.seed))
    if diff:
        shown = [d if len(d) <= 240 else d[:240] + " ...)" for d in diff]  # a population is long
        raise RunDirError(f"job {job.name}: {job.run_dir} holds a run of other settings, which --reuse would keep: "
                          + "; ".join(shown) + ". Use another --out, or drop --reuse to train afresh")


def add_training_arguments(parser: Any, what: str) -> None:
    """The flags of a study that evaluates given agents and may train its own first: ``--agent``
    (repeatable), ``--train-seeds`` (``what`` says what is trained), ``--total-timesteps``, ``--reuse``."""
    parser.add_argument("--agent", action="append", default=[], help="a learned policy ALGO:PATH (repeatable)")
    parser.add_argument("--train-seeds", type=int, default=0, help=f"first train this many seeds of {what}")
    parser.add_argument("--total-timesteps", type=int, default=None,
                        help="steps per trained seed (default: the config's)")
    parser.add_argument("--reuse", action="store_true", help="keep finished training runs in --out/runs and continue "
                        "killed ones from their checkpoints")


def check_training_arguments(args: Any) -> None:
    """UsageError (exit 2) for the flags of add_training_arguments that cannot work, before any work."""
    from agents.policies import make_policy
    from experiments.cli import UsageError, positive

    if args.train_seeds < 0:
        raise UsageError(f"--train-seeds must be >= 0, got {args.train_seeds}")
    if args.total_timesteps is not None:
        positive(args.total_timesteps, "--total-timesteps")
    for agent in args.agent:
        make_policy(agent)
