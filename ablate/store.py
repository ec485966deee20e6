"""Run directories: the manifest, one Parquet record file per finished job, and the lock.

Layout of a run directory::

    manifest.json            resolved config, its hash, the job ids, package/git/library
                             versions, python, platform, creation time, one entry per session,
                             and per checkpoint the facts its weights do not give with the
                             source of each ("checkpoints": path, label, train_seed, format,
                             settings {name: {value, source, how}}, assumed [names])
    records/<job_id>.parquet one row per (job, item, condition), the columns of
                             ``ablate.schema``; written atomically; the file's pandas
                             attrs keep what is not a record (``torch_threads``)
    .lock, owner.json        held while a run writes; owner.json names the process

A job's file appears only once it is complete (temp file in the same directory, fsync,
``os.replace``), so a run killed at any moment, even by SIGKILL, loses at most the jobs
in flight; running the same command again skips the finished ones. A directory written
for a different config hash is never mixed with this one.

    >>> store = RunStore.open("runs/q", config=cfg, config_hash=h, job_ids=ids)  # doctest: +SKIP
    >>> store.write(job_id, frame)                                             # doctest: +SKIP
    >>> records = read_records("runs/q")                                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import filelock
import pandas as pd

import ablate
from ablate.errors import AblateError
from ablate.provenance import git_state
from ablate.schema import COLUMNS

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RECORDS = "records"
LOCK = ".lock"
OWNER = "owner.json"
RUN_FORMAT_VERSION = 1
LIBRARIES = ("torch", "transformers", "numpy", "pandas", "pyarrow", "scipy", "statsmodels")
_TEMP_SUFFIX = ".tmp"


class RunStore:
    """An open run directory whose lock this process holds; use ``RunStore.open``."""

    def __init__(self, run_dir: Path, manifest: dict[str, Any],
                 lock: filelock.BaseFileLock) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        self._lock = lock

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        *,
        config: Mapping[str, Any],
        config_hash: str,
        job_ids: Sequence[str],
        experiment_file: str | None = None,
        checkpoints: Sequence[Mapping[str, Any]] | None = None,
    ) -> RunStore:
        """Lock ``run_dir`` and create its manifest, or check that the existing one was
        written for ``config_hash`` (else refuse: records of two configs never mix).
        ``checkpoints`` (what each checkpoint's config rests on) replaces the manifest's
        entry on every session, like the unhashed settings."""
        root = Path(run_dir)
        _refuse_foreign_directory(root)
        (root / RECORDS).mkdir(parents=True, exist_ok=True)
        lock = _acquire(root)
        try:
            manifest = _open_manifest(root, dict(config), config_hash, list(job_ids),
                                      experiment_file, checkpoints)
            _remove_temp_files(root, root / RECORDS)
        except BaseException:
            _release(root, lock)
            raise
        return cls(root, manifest, lock)

    def finished(self) -> set[str]:
        """Ids of the jobs whose record file is complete."""
        return finished_jobs(self.run_dir)

    def write(self, job_id: str, frame: pd.DataFrame) -> Path:
        """Write one job's records atomically: a reader sees the whole file or none."""
        assert self._lock.is_locked, "write after close"
        assert "job_id" not in frame or (frame["job_id"] == job_id).all(), "rows of another job"
        unknown = [str(c) for c in frame.columns if c not in COLUMNS]
        assert not unknown, f"columns outside ablate.schema: {unknown}"
        final = self.run_dir / RECORDS / f"{job_id}.parquet"
        temp = final.with_name(f".{job_id}.{os.getpid()}{_TEMP_SUFFIX}")
        try:
            with temp.open("wb") as handle:
                frame.to_parquet(handle, index=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_directory(final.parent)
        return final

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock.is_locked:
            _release(self.run_dir, self._lock)

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest of a run directory, or an error saying how to make one."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise AblateError(f"{run_dir} is not an ablate run directory (no {MANIFEST}); "
                          "pass the --out directory of `ablate run`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AblateError(f"{path} is not valid JSON ({err}); the run directory is damaged: "
                          "rerun into a new --out") from err


def check_run_dir(run_dir: str | Path, config_hash: str) -> None:
    """Raise now if ``RunStore.open`` would refuse ``run_dir`` for its contents (another
    config, or not a run directory), so a caller can fail before any expensive work."""
    root = Path(run_dir)
    _refuse_foreign_directory(root)
    if (root / MANIFEST).is_file():
        _refuse_other_config(root, read_manifest(root), config_hash)


def finished_jobs(run_dir: str | Path) -> set[str]:
    """Ids of the jobs whose record file exists (temp files of killed runs do not count)."""
    return {path.stem for path in (Path(run_dir) / RECORDS).glob("*.parquet")}


def missing_jobs(run_dir: str | Path) -> list[str]:
    """Job ids the manifest expects that have no record file, in grid order."""
    done = finished_jobs(run_dir)
    return [job_id for job_id in read_manifest(run_dir)["jobs"] if job_id not in done]


def job_counts(run_dir: str | Path) -> tuple[int, int] | None:
    """(finished jobs, jobs in the grid) of a run directory; None without a manifest."""
    if not (Path(run_dir) / MANIFEST).is_file():
        return None
    jobs = read_manifest(run_dir).get("jobs") or []
    return len(set(jobs) & finished_jobs(run_dir)), len(jobs)


def read_records(run_dir: str | Path) -> pd.DataFrame:
    """All records of a run, sorted by job id, rows in file order within a job.

    An incomplete run reads fine: the ids of the jobs still missing are logged and kept
    in ``frame.attrs["missing_jobs"]``. ``frame.attrs["torch_threads"]`` maps each job id
    to the torch thread counts it ran on (jobs written before ablate kept them: absent).
    """
    manifest = read_manifest(run_dir)
    files = sorted((Path(run_dir) / RECORDS).glob("*.parquet"), key=lambda p: p.stem)
    frames = [pd.read_parquet(path) for path in files]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    done = {path.stem for path in files}
    missing = [job_id for job_id in manifest["jobs"] if job_id not in done]
    if missing:
        logger.warning("%s: %d of %d jobs have no records yet (first: %s); run `ablate run` "
                       "again to finish them", run_dir, len(missing), len(manifest["jobs"]),
                       missing[0])
    threads = {path.stem: part.attrs["torch_threads"]
               for path, part in zip(files, frames, strict=True) if "torch_threads" in part.attrs}
    frame.attrs = {"missing_jobs": missing, "torch_threads": threads}
    return frame


def environment() -> dict[str, Any]:
    """What produced a run: package and git versions, libraries, python, platform."""
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    return {
        "ablate_version": ablate.__version__,
        "git": _git_state(),
        "libraries": libraries,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git_state() -> dict[str, Any] | None:
    """Commit and dirty flag of the checkout ablate runs from; None outside a checkout."""
    commit, dirty = git_state()
    return None if commit == "unknown" else {"commit": commit, "dirty": dirty}


def _refuse_foreign_directory(root: Path) -> None:
    if not root.exists() or (root / MANIFEST).is_file():
        return
    if not root.is_dir():
        raise AblateError(f"{root} exists and is not a directory; pass a new --out")
    foreign = sorted(p.name for p in root.iterdir()
                     if p.name not in (LOCK, OWNER, RECORDS) and not _is_temp(p))
    if foreign:
        raise AblateError(f"{root} is not empty and is not an ablate run directory (has "
                          f"{foreign[0]!r}, no {MANIFEST}); pass a new --out or empty it")


def _acquire(root: Path) -> filelock.BaseFileLock:
    # The OS releases this lock when its process dies, so a lock is never stale; owner.json
    # only names the holder for the refusal message and shows a run that ended uncleanly.
    lock = filelock.FileLock(str(root / LOCK), timeout=0)
    owner_path = root / OWNER
    try:
        lock.acquire()
    except filelock.Timeout:
        owner = _read_owner(owner_path)
        holder = f"process {owner.get('pid')} on {owner.get('host')} since {owner.get('started')}"
        raise AblateError(
            f"Run directory {root} is in use by another ablate run ({holder}); wait for it "
            "to finish, or pass a different --out to run separately"
        ) from None
    if owner_path.is_file():
        owner = _read_owner(owner_path)
        logger.warning("%s: taking over from process %s (started %s), which ended without "
                       "releasing the run; its finished jobs are kept", root, owner.get("pid"),
                       owner.get("started"))
    _write_json(owner_path, {"pid": os.getpid(), "host": platform.node(), "started": _now()})
    return lock


def _release(root: Path, lock: filelock.BaseFileLock) -> None:
    (root / OWNER).unlink(missing_ok=True)
    lock.release()


def _read_owner(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _open_manifest(root: Path, config: dict[str, Any], config_hash: str, job_ids: list[str],
                   experiment_file: str | None,
                   checkpoints: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    env = environment()
    session = {"started": _now(), "pid": os.getpid(), "experiment_file": experiment_file, **env}
    path = root / MANIFEST
    if path.is_file():
        manifest = read_manifest(root)
        _refuse_other_config(root, manifest, config_hash)
        if manifest.get("jobs") != job_ids:
            raise AblateError(
                f"{root} was written by ablate {manifest.get('ablate_version')}, whose job "
                "grid differs from this version's for the same config; pass a new --out"
            )
        # Unhashed settings (device, batch size, stats) may change between sessions; the
        # file they came from is the latest session's.
        manifest["config"] = config
        if experiment_file is not None:
            manifest["experiment_file"] = experiment_file
    else:
        manifest = {
            "run_format_version": RUN_FORMAT_VERSION,
            "name": config.get("name"),
            "created": session["started"],
            "experiment_file": experiment_file,
            "config_hash": config_hash,
            "config": config,
            **env,
            "jobs": job_ids,
            "sessions": [],
        }
    if checkpoints is not None:
        manifest["checkpoints"] = [dict(c) for c in checkpoints]
    manifest["sessions"].append(session)
    _write_json(path, manifest)
    return manifest


def _refuse_other_config(root: Path, manifest: Mapping[str, Any], config_hash: str) -> None:
    if manifest.get("config_hash") != config_hash:
        raise AblateError(
            f"{root} holds a run of a different experiment config (hash "
            f"{str(manifest.get('config_hash'))[:12]}, this one {config_hash[:12]}); pass "
            "a new --out, or delete the directory to start over"
        )


def _is_temp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(_TEMP_SUFFIX)


def _remove_temp_files(*directories: Path) -> None:
    for directory in directories:
        for temp in filter(_is_temp, directory.iterdir()):
            logger.info("removing %s, a file left unfinished by a killed run", temp)
            temp.unlink(missing_ok=True)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}{_TEMP_SUFFIX}")
    with temp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; directories cannot be opened this way on Windows.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
