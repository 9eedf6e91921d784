"""One queue of runs for every worker of a grid, on one machine or many sharing the output folder.

A worker takes the first run of the grid that nobody holds by creating a claim file,
``<output_dir>/queue/<run_id>/claim-<generation>.json`` (its host, boot, pid and start time), with an
exclusive create: of any number of workers asking for the same run, exactly one gets it. It keeps the
claim fresh (its modification time) while the run trains, and marks it finished with the run's status
once ``result.json`` is written. A claim whose worker is gone is taken over by creating the next
generation, again exclusively: on the same machine a worker is gone when its process is (pid, with the
process's start time against pid reuse, and a zombie counts as gone); on another machine when its
claim has not been refreshed for ``stale_after`` seconds, measured on the shared folder's own clock
(the modification time of a file this worker has just touched), so clocks that disagree between
machines do not matter. A worker with nothing left to take waits while other workers hold runs, to
take over any whose worker dies, and ends when every run is finished.

A run that failed (diverged, or crashed with a traceback) in this sitting is not retried by the other
workers; a worker started after the failure retries it, as a rerun of ``prefalign compare`` always has.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from filelock import FileLock

from ..errors import UserError
from ..utils.atomic_files import create_exclusively, write_text_atomically
from .config import CompareConfig
from .grid import RESULT_FILE, config_digest, grid_status, run_grid
from .report import write_reports

QUEUE_DIR = "queue"
STALE_AFTER = 600.0  # seconds without a refresh before another machine's claim counts as abandoned


class RunQueue:
    """This worker's view of the grid's queue in ``output_dir``.

    ``since`` is when the sitting started on the shared folder's clock (a failed run finished before it
    is retried); the workers that ``prefalign compare --workers N`` starts share their parent's.
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        stale_after: float = STALE_AFTER,
        poll: float = 2.0,
        since: float | None = None,
        log: Callable[[str], object] = print,
    ) -> None:
        self.root = Path(output_dir) / QUEUE_DIR
        self.stale_after = float(stale_after)
        self.heartbeat = max(0.2, min(30.0, self.stale_after / 10))
        self.poll = poll
        self.log = log
        self.host, self.boot_id, self.pid = socket.gethostname(), _boot_id(), os.getpid()
        stat = _process_stat(self.pid)
        self.pid_start = stat[1] if stat else None
        self._clock = self.root / "workers" / f"{self.host}-{self.pid}"
        self.since = self.now() if since is None else since
        self._held: Path | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- the shared clock ----------------------------------------------------------------------------------------

    def now(self) -> float:
        """The time on the shared folder's clock: the modification time of this worker's file, just touched."""
        self._clock.parent.mkdir(parents=True, exist_ok=True)
        self._clock.touch()  # sets the modification time to now, on the file server's clock
        return self._clock.stat().st_mtime

    # -- taking runs -------------------------------------------------------------------------------------------

    def take(self, todo: Iterable[tuple]) -> Iterator[tuple]:
        """Yield the items of ``todo`` ((index, spec, exp, run_dir), as run_grid lists them) this worker
        claims, one at a time, until none is left to run; each is marked finished when the next is asked
        for (the caller writes its result.json in between)."""
        todo = list(todo)
        waiting_for: set[str] = set()
        while todo:
            held, claimed = [], None
            for item in todo:
                state, generation, claim = self._state(item)
                if state == "done":
                    continue
                if state == "held":
                    held.append((item[1].run_id, claim))
                    continue
                if self._claim(item, generation, claim):
                    claimed = item
                    break
            if claimed is None:
                if not held:
                    break
                holders = {f"{run_id} ({_who(claim)})" for run_id, claim in held}
                if holders != waiting_for:
                    self.log(f"waiting: {len(held)} run(s) held by other workers: {', '.join(sorted(holders))}")
                    waiting_for = holders
                time.sleep(self.poll)
                continue
            waiting_for = set()
            todo = [item for item in todo if item is not claimed]
            try:
                yield claimed
            except GeneratorExit:  # the caller stopped (an error, Ctrl-C): give the run back at once
                self.release()
                raise
            self._finish(claimed)
        self._stop_beat()

    def release(self) -> None:
        """Give the run this worker holds back to the queue (marked released: the next worker takes it)."""
        with self._lock:
            held, self._held = self._held, None
        self._stop_beat()
        if held is not None and _is_current(held):
            claim = _read(held) or {}
            claim.update(finished=time.time(), status="released")
            write_text_atomically(held, json.dumps(claim, indent=2))

    def holds(self, run_id: str) -> bool:
        """Whether this worker's claim on ``run_id`` is still the run's current one (nobody took it over)."""
        with self._lock:
            held = self._held
        return held is not None and held.parent == self.root / run_id and _is_current(held)

    def _state(self, item: tuple) -> tuple[str, int, dict | None]:
        """("done" | "free" | "held", the current claim's generation, that claim)."""
        _, spec, exp, run_dir = item
        digest = config_digest(exp)
        current = _current_claim(self.root / spec.run_id)  # read before the record: a claim is marked
        record = _record(run_dir)  # finished only after its record is written
        if record is not None and record.get("status") == "ok" and _digest(record) == digest:
            return "done", current[0] if current else 0, None
        if current is None:
            return "free", 0, None
        generation, path, claim = current
        if claim is None:  # written without hard links and still being written, or damaged
            fresh = self.now() - _mtime(path) < self.stale_after
            return ("held" if fresh else "free"), generation, {"path": str(path)}
        if claim.get("config_digest") != digest:  # a claim for settings that have since changed
            return "free", generation, claim
        if claim.get("finished") is not None:
            failed_now = (
                claim.get("status") == "failed"
                and record is not None
                and _digest(record) == digest
                and _mtime(path) >= self.since
            )
            return ("done" if failed_now else "free"), generation, claim
        return ("held" if self._alive(claim, path) else "free"), generation, claim

    def _alive(self, claim: dict, path: Path) -> bool:
        if claim.get("host") == self.host and claim.get("boot_id") == self.boot_id:  # this machine, this boot
            if claim.get("pid") == self.pid and claim.get("pid_start") == self.pid_start:
                return False  # a claim of this very process it no longer holds
            return _process_alive(int(claim["pid"]), claim.get("pid_start"))
        return self.now() - _mtime(path) < self.stale_after

    def _claim(self, item: tuple, generation: int, previous: dict | None) -> bool:
        _, spec, exp, run_dir = item
        path = self.root / spec.run_id / f"claim-{generation + 1:04d}.json"
        claim = {
            "run_id": spec.run_id,
            "host": self.host,
            "boot_id": self.boot_id,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "started_at": time.time(),
            "config_digest": config_digest(exp),
            "heartbeat_seconds": self.heartbeat,
            "finished": None,
            "status": None,
        }
        if not create_exclusively(path, json.dumps(claim, indent=2)):
            return False  # another worker was quicker
        with self._lock:
            self._held = path
        self._start_beat()
        if previous is not None:  # a gone worker's run, one given back, or one that failed: from scratch
            if previous.get("finished") is None:
                self.log(f"taking over {spec.run_id} from {_who(previous)}: its worker is gone; starting it afresh")
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        return True

    def _finish(self, item: tuple) -> None:
        """Mark this worker's claim on ``item`` finished, with the status of the run's record."""
        _, spec, exp, run_dir = item
        with self._lock:
            held, self._held = self._held, None
        if held is None:
            return
        if not _is_current(held):
            return  # taken over meanwhile (run_grid dropped this worker's result): the claim is the other's now
        record = _record(run_dir)
        ok = record is not None and _digest(record) == config_digest(exp)
        status = record.get("status", "failed") if ok else "released"
        claim = json.loads(held.read_text())
        claim.update(finished=time.time(), status=status)
        write_text_atomically(held, json.dumps(claim, indent=2))

    # -- the heartbeat -----------------------------------------------------------------------------------------

    def _start_beat(self) -> None:
        if self._beat is None or not self._beat.is_alive():
            self._stop.clear()
            self._beat = threading.Thread(target=self._refresh, name="prefalign-queue-heartbeat", daemon=True)
            self._beat.start()

    def _stop_beat(self) -> None:
        self._stop.set()

    def _refresh(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._lock:
                held = self._held
            if held is not None:
                try:
                    os.utime(held)
                except OSError:
                    pass

    # -- the reports -------------------------------------------------------------------------------------------

    def write_reports(self, cfg: CompareConfig, command: str) -> dict[str, Path]:
        """results.json, the CSV, the tables and charts from every run's record on disk, under a lock.

        Whoever writes last has seen every record written before it, so the worker that finishes last
        writes the complete reports; no row is lost or doubled, whatever the other workers do meanwhile.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / "reports.lock")):
            return write_reports(cfg, recorded(cfg), command)


def run_workers(
    cfg: CompareConfig,
    workers: int = 1,
    *,
    progress: bool = False,
    shard: tuple[int, int] = (1, 1),
    stale_after: float = STALE_AFTER,
    log: Callable[[str], object] = print,
) -> RunQueue:
    """Work through the grid's queue with ``workers`` processes on this machine: this one and
    ``workers - 1`` started beside it, each with its share of the torch threads. Returns this process's
    queue once every run (of ``shard``) is finished; other machines may be working the same queue."""
    queue = RunQueue(cfg.output_dir, stale_after=stale_after, log=_prefixed(log, 1, workers))
    threads = max(1, torch.get_num_threads() // workers)
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch or tokenizer threads
    helpers = [
        spawn.Process(target=_helper, args=(cfg, number, workers, threads, progress, shard, stale_after, queue.since))
        for number in range(2, workers + 1)
    ]
    for helper in helpers:
        helper.start()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run_grid(cfg, progress=progress, log=queue.log, shard=shard, queue=queue)
    except BaseException:  # an error or Ctrl-C: give this worker's run back, stop the others
        queue.release()
        for helper in helpers:  # their claims are taken over by the next `prefalign compare` on this machine
            helper.terminate()
        raise
    finally:
        for helper in helpers:
            helper.join()
        torch.set_num_threads(before)
    for number, helper in enumerate(helpers, 2):
        if helper.exitcode:
            log(f"worker {number} stopped with exit status {helper.exitcode} (output above); its runs were taken over")
    return queue


def _helper(cfg, number, workers, threads, progress, shard, stale_after, since) -> None:
    """A worker process that ``run_workers`` started (the target of multiprocessing's spawn)."""
    torch.set_num_threads(threads)
    log = _prefixed(print, number, workers)
    try:
        queue = RunQueue(cfg.output_dir, stale_after=stale_after, since=since, log=log)
        run_grid(cfg, progress=progress, log=log, shard=shard, queue=queue)
    except UserError as exc:
        print(f"prefalign: error: worker {number}: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


def _prefixed(log: Callable[[str], object], number: int, workers: int) -> Callable[[str], object]:
    if workers == 1:
        return log

    def prefixed(line: str) -> None:
        log(f"[worker {number}] {line}")
        sys.stdout.flush()  # several processes share the terminal or log file: a line as soon as it is written

    return prefixed


def recorded(cfg: CompareConfig) -> list[dict | None]:
    """Every run's record for the current settings (finished or failed), None where there is none, grid order."""
    out = []
    for _, exp, run_dir, done in grid_status(cfg):
        if done is None:
            record = _record(run_dir)
            if record is not None and record.get("status") == "failed" and _digest(record) == config_digest(exp):
                done = record
        out.append(done)
    return out


def claims(output_dir: str | Path, run_id: str) -> list[dict]:
    """Every claim ever made on ``run_id``, oldest first (the history of who ran it)."""
    folder = Path(output_dir) / QUEUE_DIR / run_id
    return [_read(p) for _, p in sorted(_generations(folder))]


def _generations(folder: Path) -> list[tuple[int, Path]]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.startswith("claim-") and name.endswith(".json") and name[6:-5].isdigit():
            out.append((int(name[6:-5]), folder / name))
    return out


def _current_claim(folder: Path) -> tuple[int, Path, dict | None] | None:
    found = _generations(folder)
    if not found:
        return None
    generation, path = max(found)
    return generation, path, _read(path)


def _is_current(path: Path) -> bool:
    current = _current_claim(path.parent)
    return current is not None and current[1] == path


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _record(run_dir: Path) -> dict | None:
    record = _read(run_dir / RESULT_FILE)
    return record if isinstance(record, dict) and "config" in record else None


def _digest(record: dict) -> str:
    return config_digest(record["config"])  # recomputed, as grid._finished does: defaults may have moved


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _who(claim: dict | None) -> str:
    claim = claim or {}
    return f"{claim.get('host', '?')} pid {claim.get('pid', '?')}"


def _boot_id() -> str | None:
    """This boot of this machine (Linux); None elsewhere."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process, from /proc (Linux); None elsewhere or if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name, in parentheses, may hold spaces
    return fields[0], int(fields[19])


def _process_alive(pid: int, start: int | None) -> bool:
    stat = _process_stat(pid)
    if stat is not None:
        state, started = stat
        return state not in ("Z", "X") and (start is None or started == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True
