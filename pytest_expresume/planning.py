"""Decide what a session does: start a new experiment or resume one, and with which config.

Pure of pytest: reads the results root and the chosen experiment dir, writes nothing, and
reports every refusal as a :class:`~pytest_expresume.config.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .config import (
    GRID_KEYS,
    ConfigError,
    ExperimentSpec,
    changed_keys,
    check_spelling,
    config_hash,
    describe_change,
    grid_keys_of,
    is_config_hash_of,
    merged_grid,
    render_value,
    runtime_keys_of,
    validate,
    with_grid,
)
from .growth import GridChange
from .layout import find_experiment_dirs, is_experiment_dir, load_saved_config, new_experiment_dir
from .rebuild import recover_checkpoint
from .scanner import ResultStatus
from .store import Checkpoint, CheckpointError, CheckpointStore


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for on the command line."""

    given: dict[str, Any] | None
    results_root: Path
    resume: bool = False
    fresh: bool = False
    experiment_dir: Path | None = None
    #: The status of foreign result files (the hook), for rebuilding a corrupt checkpoint.
    result_status: ResultStatus | None = None


@dataclass(frozen=True)
class SessionPlan:
    """The outcome: where the experiment lives and the config that is authoritative."""

    mode: Literal["new", "resume"]
    experiment_dir: Path
    experiment: dict[str, Any]
    spec: ExperimentSpec
    config_hash: str
    checkpoint: Checkpoint | None = None
    #: The dir has no saved config yet (new, or an older layout): save it when starting.
    save_config: bool = False
    #: Given keys that lost to the saved config (``--resume``).
    ignored: list[str] = field(default_factory=list)
    #: Runtime keys whose given value replaced the saved one.
    replaced: list[str] = field(default_factory=list)
    #: The grid given now differs from the saved one: it is used, and saved at the start.
    grid_change: GridChange | None = None
    #: Why the checkpoint could not be read; ``checkpoint`` is then rebuilt in memory
    #: (and rebuilt on disk when the session opens the experiment).
    corruption: str | None = None


def existing_experiment_dir(request: PlanRequest) -> Path:
    """The experiment dir a command works on: ``--experiment-dir``, else the newest one."""
    if request.experiment_dir is not None:
        _check_experiment_dir(request.experiment_dir)
        return request.experiment_dir
    if request.given is None or "experiment_id" not in request.given:
        raise ConfigError(
            "no experiment given: use --experiment-dir=DIR, or give the experiment config "
            "(--experiment=FILE, ini expresume_config or --experiment-set experiment_id=...)"
        )
    experiment_id = request.given["experiment_id"]
    found = find_experiment_dirs(request.results_root, str(experiment_id))
    if not found:
        raise ConfigError(f"no experiment dir for {experiment_id!r} under {request.results_root}")
    return found[-1]


def _check_experiment_dir(path: Path) -> None:
    if not path.is_dir() or not is_experiment_dir(path):
        raise ConfigError(
            f"--experiment-dir {path} is not an experiment dir "
            "(it has no checkpoint.json and no config/experiment.json)"
        )


def plan_session(request: PlanRequest, now: datetime) -> SessionPlan:
    """Resolve the request against the disk; raises ConfigError to refuse."""
    if request.fresh and request.resume:
        raise ConfigError("--fresh and --resume contradict each other: choose one")
    if request.given is not None:
        check_spelling(request.given)
    if request.fresh and request.experiment_dir is not None:
        raise ConfigError(
            "--fresh starts a new experiment dir; it cannot be combined with --experiment-dir"
        )
    target: Path | None = None
    if request.experiment_dir is not None:
        target = request.experiment_dir
        _check_experiment_dir(target)
    else:
        if request.given is None:
            raise ConfigError(
                "nothing to resume: give --experiment-dir=DIR or the experiment config "
                "(--experiment=FILE, ini expresume_config or --experiment-set)"
            )
        spec = validate(request.given)
        if not request.fresh:
            found = find_experiment_dirs(request.results_root, spec.experiment_id)
            target = found[-1] if found else None
        if target is None:
            if request.resume:
                raise ConfigError(
                    f"nothing to resume: no experiment dir for {spec.experiment_id!r} "
                    f"under {request.results_root}"
                )
            return SessionPlan(
                mode="new",
                experiment_dir=new_experiment_dir(request.results_root, spec.experiment_id, now),
                experiment=dict(request.given),
                spec=spec,
                config_hash=config_hash(request.given),
                save_config=True,
            )
    return _plan_resume(request, target)


def _plan_resume(request: PlanRequest, target: Path) -> SessionPlan:
    given = request.given
    corruption: str | None = None
    try:
        with CheckpointStore(target) as store:
            checkpoint = store.load() if store.exists() else None
    except CheckpointError:
        checkpoint, corruption = recover_checkpoint(target, result_status=request.result_status)
    saved = load_saved_config(target)
    if saved is None:
        if checkpoint is None:
            raise ConfigError(f"{target} holds neither a saved config nor a checkpoint")
        if given is None:
            raise ConfigError(
                f"{target} has no saved config (an older layout): give the experiment config"
            )
        if not is_config_hash_of(given, checkpoint.config_hash):
            raise ConfigError(
                f"{target} has no saved config (an older layout) and the given config's hash "
                f"{config_hash(given)} is not the checkpoint's {checkpoint.config_hash}"
            )
        return SessionPlan(
            mode="resume",
            experiment_dir=target,
            experiment=dict(given),
            spec=validate(given),
            config_hash=checkpoint.config_hash,
            checkpoint=checkpoint,
            save_config=True,
            corruption=corruption,
        )

    authoritative = dict(saved)
    ignored: list[str] = []
    replaced: list[str] = []
    grid_change: GridChange | None = None
    if given is not None:
        runtime = runtime_keys_of(saved)
        if not request.resume and config_hash(given) != config_hash(saved):
            changes = changed_keys(
                saved, given, ignore=(runtime & runtime_keys_of(given)) | GRID_KEYS
            )
            lines = "\n".join("  " + describe_change(k, saved, given) for k in changes)
            raise ConfigError(
                f"the experiment config has changed since {target} was started:\n{lines}\n"
                "use --resume to continue with the saved config, "
                "or --fresh to start a new experiment"
            )
        for key in changed_keys(saved, given):
            if key not in given or key in GRID_KEYS:
                continue
            if key in runtime:
                authoritative[key] = given[key]
                replaced.append(describe_change(key, saved, given))
            else:
                ignored.append(
                    f"{key}: given {render_value(given[key])} ignored, "
                    f"the saved {render_value(saved.get(key)) if key in saved else '(absent)'} "
                    "is used"
                )
        # The grid given now is the work asked for: each grid setting given replaces the
        # saved one; a setting not given keeps the saved value.
        grid = merged_grid(saved, given)
        if grid != grid_keys_of(saved):
            authoritative = with_grid(authoritative, grid)
            grid_change = GridChange(before=grid_keys_of(saved), after=grid)
    spec = validate(authoritative)
    if checkpoint is None:
        checkpoint = Checkpoint(
            experiment_id=spec.experiment_id,
            experiment_dir=str(target.resolve()),
            config_hash=config_hash(saved),
        )
    return SessionPlan(
        mode="resume",
        experiment_dir=target,
        experiment=authoritative,
        spec=spec,
        config_hash=config_hash(saved),
        checkpoint=checkpoint,
        ignored=ignored,
        replaced=replaced,
        corruption=corruption,
        grid_change=grid_change,
    )
