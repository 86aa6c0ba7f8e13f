"""Resumable jobs: one JSON record per job, saved the moment the job finishes.

An experiment (pilot runs, learning-rate tuning, the main job, a study of one's own) is a list of
*jobs* -- deterministic functions of their parameters, each with a string id -- run on a backend
of :func:`aflqueue.parallel.pmap`. :func:`run_jobs` skips jobs whose record is already on disk,
so an interrupted experiment resumes where it stopped, and any backend produces the same files.

Layout of a :class:`JobStore` folder:
* ``cells/<id>.json`` -- the record, holding only what the job's inputs determine (identical
  bytes on every backend and machine with the same code);
* ``timings/<id>.json`` -- wall-clock measurements of that job (differ from run to run);
* ``cells/corrupt/`` -- unreadable records moved aside (and recomputed) by :meth:`JobStore.done`;
* ``cells/stale/`` -- records computed with other settings than the job now asks for, moved
  aside (and recomputed) by :func:`run_jobs` when the experiment declares its ``settings``.

Every record carries the :func:`code_version` it was computed with, so that a report can list
(or refuse) results from mixed versions of the code (:func:`code_versions`). Code that lives
outside the package -- a study's own experiment module -- is named with ``code=`` (folders or
files), so that its records are stamped with that code too.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .errors import ValidationError, require
from .io import atomic_write_json, file_errors, json_digest, json_safe, read_json
from .parallel import pmap

__all__ = ["JobStore", "run_jobs", "run_staged", "code_version", "code_versions", "inputs_digest"]

_PACKAGE = Path(__file__).resolve().parent


def code_version(extra: Iterable[str | Path] = ()) -> dict[str, Any]:
    """Identity of the code that computes results: ``source`` (SHA-256 over the package's ``.py``
    files, path and content, in sorted order: equal sources give equal hashes whatever the
    checkout) and ``commit`` (git HEAD of the checkout, None outside one; informative only,
    since committing results moves HEAD without changing the code).

    ``extra``: code outside the package that the results also depend on (a study's folder, a
    script): each folder adds its ``.py`` files (recursively, named relative to the folder's
    parent), each file itself (named by its file name), in the order given after the package's.
    A study stamps its records with ``code_version([its folder, ...])``, so that a change of the
    study's own code shows in its records as a change of version."""
    return _code_version(tuple(Path(x).resolve() for x in extra))


@lru_cache(maxsize=16)
def _code_version(extra: tuple[Path, ...]) -> dict[str, Any]:
    h = hashlib.sha256()
    files = [(p.relative_to(_PACKAGE).as_posix(), p) for p in sorted(_PACKAGE.rglob("*.py"))]
    for root in extra:
        if root.is_dir():
            files += [(p.relative_to(root.parent).as_posix(), p) for p in sorted(root.rglob("*.py"))]
        elif root.is_file():
            files.append((root.name, root))
        else:
            raise ValidationError("code", f"{str(root)!r} is neither a folder nor a file")
    for name, p in files:
        h.update(name.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    commit = None
    try:
        r = subprocess.run(["git", "-C", str(_PACKAGE), "rev-parse", "HEAD"], capture_output=True, text=True,
                           timeout=10)
        if r.returncode == 0:
            commit = r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"source": h.hexdigest()[:16], "commit": commit}


def inputs_digest(args: Any) -> dict[str, str]:
    """``{"inputs": digest}`` of a training job's arguments (for :func:`run_jobs`' ``settings``),
    leaving out the ``output`` of each configuration table (``args`` itself, or a table among its
    items): where a run writes does not change what it computes, so an experiment folder that is
    moved, renamed or named by another relative path still resumes."""
    def strip(a: Any) -> Any:
        return {k: v for k, v in a.items() if k != "output"} if isinstance(a, dict) else a

    return {"inputs": json_digest([strip(a) for a in args] if isinstance(args, (list, tuple)) else strip(args))}


def code_versions(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many records each code version produced: ``{"<source> (commit <12 digits>)": count}``
    in order of first appearance (records without a stamp count under ``None``)."""
    out: dict[str, int] = defaultdict(int)
    for r in records:
        v = r.get("code_version") or {}
        out[f"{v.get('source')} (commit {str(v.get('commit'))[:12]})"] += 1
    return dict(out)


@dataclass(frozen=True)
class JobStore:
    """The folder of one experiment's records (module docstring)."""

    folder: Path

    def __post_init__(self):
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def cells(self) -> Path:
        return self.folder / "cells"

    def path(self, job_id: str) -> Path:
        return self.cells / f"{job_id}.json"

    def _valid(self, p: Path) -> dict[str, Any] | None:
        try:
            rec = read_json(p)
        except ValidationError:
            return None
        return rec if isinstance(rec, dict) and rec.get("id") == p.stem else None

    def set_aside(self, job_id: str, folder: str) -> Path:
        """Move the record of ``job_id`` to ``cells/<folder>/<id>.json.<k>`` (first free ``k``)."""
        p = self.path(job_id)
        bad = self.cells / folder
        bad.mkdir(exist_ok=True)
        k = 0
        while (bad / f"{p.name}.{k}").exists():
            k += 1
        p.replace(bad / f"{p.name}.{k}")
        return bad / f"{p.name}.{k}"

    def discard(self, job_id: str) -> None:
        """Delete the record of ``job_id`` and its timings (nothing if absent)."""
        self.path(job_id).unlink(missing_ok=True)
        (self.folder / "timings" / f"{job_id}.json").unlink(missing_ok=True)

    def done(self, say: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
        """Finished records by id. An unreadable record is moved to ``cells/corrupt/`` (named in
        one line through ``say``) so that its job runs again."""
        out: dict[str, dict[str, Any]] = {}
        if not self.cells.is_dir():
            return out
        for p in sorted(self.cells.glob("*.json")):
            rec = self._valid(p)
            if rec is None:
                moved = self.set_aside(p.stem, "corrupt")
                if say is not None:
                    say(f"unreadable record {p} moved to {moved}; its job runs again")
                continue
            out[p.stem] = rec
        return out

    def save(self, record: dict[str, Any]) -> Path:
        """Write ``record`` (needs ``id``; an optional ``timing`` dict goes to ``timings/``).

        The timing file is written first, so that a finished record always has its timings."""
        rec = dict(record)
        timing = rec.pop("timing", None)
        if timing is not None:
            atomic_write_json(self.folder / "timings" / f"{rec['id']}.json", timing)
        return atomic_write_json(self.path(rec["id"]), rec)

    def load(self) -> list[dict[str, Any]]:
        """All finished records in id order, each with its timings under ``timing`` ({} if none)."""
        out = []
        for job_id, rec in sorted(self.done().items()):
            t = self.folder / "timings" / f"{job_id}.json"
            try:
                rec["timing"] = read_json(t) if t.is_file() else {}
            except ValidationError:
                rec["timing"] = {}
            out.append(rec)
        return out


def run_jobs(jobs: Sequence[tuple[str, Any]], fn: Callable[[Any], dict[str, Any]], store: JobStore, *,
             backend: str = "serial", workers: int | None = None, address: str | None = None,
             num_gpus: float = 0.0, progress: Callable[[str], None] | None = print, limit: int | None = None,
             describe: Callable[[dict[str, Any]], str] | None = None,
             settings: Callable[[Any], Any] | None = None, fresh: bool = False,
             code: Sequence[str | Path] = (), batch: int = 1,
             check: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Run the jobs ``(id, args)`` whose record is missing and return every finished record.

    ``fn(args)`` must be a module-level function returning a JSON-serialisable dict; the record
    saved is that dict with ``id`` and ``code_version`` added (an ``timing`` entry, if any, goes to
    ``timings/``). ``limit`` stops after that many new jobs (used to test interruption);
    ``describe(record)`` adds a short result to each progress line.

    ``settings(args)``, when given, is what a record must have been computed with to count as
    done (e.g. budgets and the system description): it is saved in the record, and a record with
    other settings is moved to ``cells/stale/`` and its job runs again. ``check(record)``, when
    given, checks each saved record of these jobs before anything runs (records are files, read as
    hostile input): one that fails raises its :class:`ValidationError`, naming the record's file
    and field. ``fresh`` deletes the records of these jobs first (records of other jobs in the
    store are kept). ``code``: code
    outside the package that ``fn`` runs (folders or files), stamped into each record's
    ``code_version`` with the package (:func:`code_version`). ``batch > 1``: ``fn`` takes a list
    of up to ``batch`` jobs' args and returns their records in order (e.g. replica-batched
    training, :func:`aflqueue.replicated.train_replicas`); the chunks, in job order, are what the
    backend distributes, and each chunk's records are saved when it returns.

    Returns every record of the store (not only these jobs'), in id order.
    """

    say = progress or (lambda s: None)
    if fresh:
        for i, _ in jobs:
            store.discard(i)
    have = store.done(say)
    wanted = {i: json_safe(settings(a)) for i, a in jobs} if settings is not None else {}
    for i, s in wanted.items():
        if i in have and have[i].get("settings") != s:
            moved = store.set_aside(i, "stale")
            del have[i]
            say(f"record {i} was computed with other settings: moved to {moved}; its job runs again")
    for i in [i for i, _ in jobs if i in have] if check is not None else []:
        # writes are atomic, so a record failing its check was edited or damaged afterwards: a bad
        # file, refused as any other (recomputing it quietly would hide the damage)
        with file_errors(f"{str(store.path(i))!r} (delete it to run its job again)"):
            check(have[i])
    todo = [(i, a) for i, a in jobs if i not in have]
    if limit is not None:
        todo = todo[:limit]
    say(f"{len(todo)} job(s) to run ({backend}), {len(have)} already done")
    t0 = time.perf_counter()
    count = [0]
    version = code_version(code)

    def on_result(k: int, rec: dict[str, Any]) -> None:
        job_id = todo[k][0]
        rec = {"id": job_id, "code_version": version, **({"settings": wanted[job_id]} if settings is not None else {}), **rec}
        store.save(rec)
        count[0] += 1
        wall = rec.get("timing", {}).get("wall_time")
        extra = f": {describe(rec)}" if describe is not None else ""
        say(f"[{count[0]}/{len(todo)}] {rec['id']}{extra} ({'' if wall is None else f'{wall:.1f} s, '}"
            f"elapsed {time.perf_counter() - t0:.0f} s)")

    require(isinstance(batch, int) and batch >= 1, "batch", f"must be an integer >= 1 (got {batch!r})")
    if batch == 1:
        pmap(fn, [a for _, a in todo], backend=backend, workers=workers, address=address, num_gpus=num_gpus,
             on_result=on_result)
        return store.load()
    starts = list(range(0, len(todo), batch))

    def on_chunk(c: int, recs: list[dict[str, Any]]) -> None:
        require(len(recs) == len(todo[starts[c]:starts[c] + batch]), "batch",
                "a batched job function must return one record per job of its chunk")
        for k, rec in enumerate(recs):
            on_result(starts[c] + k, rec)

    pmap(fn, [[a for _, a in todo[i:i + batch]] for i in starts], backend=backend, workers=workers,
         address=address, num_gpus=num_gpus, on_result=on_chunk)
    return store.load()


def run_staged(output: str | Path, tuning_jobs: Sequence[tuple[str, Any]], fn: Callable[[Any], dict[str, Any]],
               select: Callable[[list[dict[str, Any]]], dict[str, Any]],
               evaluation_jobs: Callable[[dict[str, Any]], Sequence[tuple[str, Any]]], *, stage: str = "all",
               settings: Callable[[Any], Any] | None = None,
               describe_tuning: Callable[[dict[str, Any]], str] | None = None,
               describe_evaluation: Callable[[dict[str, Any]], str] | None = None, backend: str = "serial",
               workers: int | None = None, address: str | None = None, progress: Callable[[str], None] | None = print,
               limit: int | None = None, code: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Tune, select, evaluate: the three stages of a tuned experiment, resumable.

    Stage ``tune`` runs the missing ``tuning_jobs`` into ``output/tuning``. Once every one of
    them has a record, ``select(records)`` is computed *once* and written to
    ``output/selection.json`` (with ``tuning_plan``, a digest of the tuning job ids); later calls
    read it back, so the choice cannot move once evaluation has begun, and a selection made for
    another tuning plan is refused. Stage ``eval`` then runs ``evaluation_jobs(selection)`` into
    ``output/cells``. ``stage``: ``tune``, ``eval`` or ``all``; ``settings``, ``limit``, ``code``
    and the backend arguments as in :func:`run_jobs` (``limit`` per stage).

    Returns ``{"tuning": records, "selection": dict or None, "evaluation": records}``."""
    require(stage in ("tune", "eval", "all"), "stage", f"must be tune, eval or all (got {stage!r})")
    out = Path(output)
    common = dict(backend=backend, workers=workers, address=address, progress=progress, settings=settings,
                  limit=limit, code=code)
    store = JobStore(out / "tuning")
    wanted = {i for i, _ in tuning_jobs}
    if stage in ("tune", "all"):
        records = run_jobs(tuning_jobs, fn, store, describe=describe_tuning, **common)
    else:
        records = store.load()
    records = [r for r in records if r["id"] in wanted]
    plan = json_digest(sorted(wanted))
    path = out / "selection.json"
    selection = read_json(path) if path.is_file() else None
    if selection is not None and selection.get("tuning_plan", plan) != plan:
        raise ValidationError("selection.json", f"{str(path)!r} was made for another tuning plan; use a new output "
                                                "folder (or move the old selection aside to tune again)")
    if selection is None and len(records) == len(wanted):
        selection = {**select(records), "tuning_plan": plan}
        atomic_write_json(path, selection)
    evaluation: list[dict[str, Any]] = []
    if stage in ("eval", "all") and selection is not None:
        jobs = evaluation_jobs(selection)
        ids = {i for i, _ in jobs}
        evaluation = [r for r in run_jobs(jobs, fn, JobStore(out / "cells"), describe=describe_evaluation, **common)
                      if r["id"] in ids]
    elif stage == "eval":
        raise ValidationError("stage", f"no selection yet in {str(out)!r}: finish the tuning stage first")
    return {"tuning": records, "selection": selection, "evaluation": evaluation}
