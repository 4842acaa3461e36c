"""Crash test: an engine process journals and snapshots a seeded command stream and is killed with
SIGKILL at random points, again and again on the same store, 52 times with sync "always" and 52 with
"group". After every kill, recovery must give exactly the state of an uninterrupted run over the
commands recovered, those must include every command the process had acknowledged, the events it had
released must be the uninterrupted run's, and the audit must hold; `store verify` must find the
store healthy and agree with recovery.

The kill comes from outside at a random time (while the process starts and recovers), or from a
timer thread inside it that fires a random few milliseconds after a random command, so it lands
mid-command, mid-fsync or mid-snapshot while the engine runs flat out. This file is also the
engine process: `python test_crash.py child <store> <stream> <sync> <die after> <delay ms>`."""
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest

from perpcore import Exchange
from perpcore import messages as m
from perpcore import snapshot as sn

KILLS = 52                      # per sync mode
CHECKPOINT_EVERY = 250          # commands between snapshots, so kills land in and around them
MAX_RUN = 400                   # commands a run may submit before its kill is armed
STEPS = KILLS * MAX_RUN         # enough stream for every run, however the dice fall


def _config():
    from perpcore.config import default_config
    return default_config()


def child(store_dir: str, stream_path: str, sync: str, die_after: str, delay_ms: str) -> None:
    """Recovers the store, then submits the stream from where it stands, printing after each
    release `ack <seq> <digest of every event released since start>` (the events of every command
    up to seq have been released to the client). After `die_after` commands (0: never) it arms a
    timer that SIGKILLs the process `delay_ms` later."""
    cmds = msgspec.msgpack.decode(Path(stream_path).read_bytes(), type=list[m.Commands])
    store = sn.Store(store_dir, _config(), sync=sync, group_records=32, group_ms=1)
    engine = store.engine
    start = engine.ex.seq
    digest = hashlib.blake2b(digest_size=16)
    out = sys.stdout
    out.write(f"start {start}\n")
    out.flush()
    acked = start
    encode = m.encoder.encode
    die_at = start + int(die_after) if int(die_after) else -1
    kill = threading.Timer(float(delay_ms) / 1000, os.kill, (os.getpid(), signal.SIGKILL))
    # a run submits at most 2 * MAX_RUN commands, so a fast engine killed late does not use up
    # the stream that the later runs need
    for cmd in cmds[start:start + 2 * MAX_RUN]:
        if engine.ex.seq == die_at:
            kill.start()
        released = engine.submit(cmd)
        if engine.ex.seq % CHECKPOINT_EVERY == 0:
            released += store.checkpoint()[1]
        for event in released:
            digest.update(encode(event))
        if engine.acknowledged_seq > acked:
            acked = engine.acknowledged_seq
            out.write(f"ack {acked} {digest.hexdigest()}\n")
            out.flush()
    store.close()
    # the stream ran out before the kill (a fast engine): it idles, as a live venue waits for
    # more commands, until the kill comes
    if die_at > 0 and not kill.is_alive() and not kill.finished.is_set():
        kill.start()
    while True:
        time.sleep(1)


class Reference:
    """The uninterrupted run, advanced as far as each check needs (recovered seqs only grow)."""

    def __init__(self, cmds):
        self.cmds = cmds
        self.ex = Exchange(_config())
        self.events: list[bytes] = []       # encoded events of command i + 1, per command

    def at(self, seq: int) -> Exchange:
        while self.ex.seq < seq:
            events = self.ex.submit(self.cmds[self.ex.seq])
            self.events.append(b"".join(m.encoder.encode(e) for e in events))
        assert self.ex.seq == seq
        return self.ex

    def digest(self, start: int, end: int) -> str:
        self.at(end)
        d = hashlib.blake2b(digest_size=16)
        for chunk in self.events[start:end]:
            d.update(chunk)
        return d.hexdigest()


def _audit_holds(ex) -> None:
    if not hasattr(ex, "audit"):
        return
    audit = ex.audit()
    assert getattr(audit, "ok", True), audit
    if hasattr(audit, "check"):
        audit.check()


def _run_and_kill(rng, store_dir, stream_path, sync):
    """Runs the engine until it is killed; returns (start seq or None, last ack or None)."""
    from_outside = rng.random() < 0.2
    die_after = 0 if from_outside else rng.randint(1, MAX_RUN)
    proc = subprocess.Popen([sys.executable, __file__, "child", str(store_dir), str(stream_path),
                             sync, str(die_after), f"{rng.uniform(0, 5):.3f}"],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent)
    if from_outside:
        time.sleep(rng.uniform(0.0, 0.5))       # while it starts up and recovers
        proc.send_signal(signal.SIGKILL)
    out = proc.stdout.read()                    # all it wrote before it died
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the engine ended otherwise ({proc.returncode})"
    complete = [line.split() for line in out.splitlines(keepends=True) if line.endswith("\n")]
    start = next((int(w[1]) for w in complete if w[0] == "start"), None)
    acks = [(int(w[1]), w[2]) for w in complete if w[0] == "ack"]
    return start, (acks[-1] if acks else None)


@pytest.mark.slow
@pytest.mark.parametrize("sync", ["always", "group"])
def test_sigkill_at_random_points_recovers_every_acknowledged_command(tmp_path, sync):
    from test_journal import session_commands

    rng = random.Random(f"20240808 {sync}")
    cmds = session_commands(seed=77, steps=STEPS)
    stream_path = tmp_path / "stream.msgpack"
    stream_path.write_bytes(m.encoder.encode(cmds))
    store_dir = tmp_path / "store"
    reference = Reference(cmds)
    acknowledged = 0
    kills = from_snapshot = torn = acked_runs = 0
    while kills < KILLS:
        start, last_ack = _run_and_kill(rng, store_dir, stream_path, sync)
        kills += 1
        if last_ack is not None:
            ack_seq, ack_digest = last_ack
            # the events the client was given are the uninterrupted run's
            assert ack_digest == reference.digest(start, ack_seq)
            acknowledged = ack_seq
            acked_runs += 1
        # a crash leaves a healthy store (at most a torn tail): verify agrees with recovery
        check = sn.verify_store(store_dir, _config()) if store_dir.exists() else None
        store = sn.Store(store_dir, _config(), sync="none")
        ex = store.engine.ex
        r = store.recovery
        if check is not None:           # (None: killed before it had created the store)
            assert check.healthy and check.last_seq == ex.seq, check.problems
        from_snapshot += bool(r.snapshot)
        torn += r.torn_tail is not None
        # nothing acknowledged is lost, and what was recovered is exactly the uninterrupted run
        assert ex.seq >= acknowledged, (ex.seq, acknowledged)
        assert ex.state_hash() == reference.at(ex.seq).state_hash()
        _audit_holds(ex)
        acknowledged = ex.seq           # recovered and now durable: the next run starts here
        store.close()
    assert from_snapshot > 0 and acked_runs >= KILLS // 2
    print(f"sync {sync}: {kills} kills, {acked_runs} runs with acknowledgements checked, "
          f"{from_snapshot} recoveries from a snapshot, {torn} torn tails, {acknowledged} commands")


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child(*sys.argv[2:7])
