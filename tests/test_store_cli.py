"""`perpcore store verify` and `perpcore store repair`, through click's CliRunner: verify reports
what it finds and exits 0 only for a healthy store (intact, and the engine not halted); repair cuts
the journal after a command so the store opens again, keeping everything it cuts, and refuses what
it should not do."""
import json
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from perpcore import Exchange
from perpcore import journal as jr
from perpcore import snapshot as sn
from perpcore.cli import main
from perpcore.config import load_config
from perpcore.exchange import config_digest
from test_journal import CONFIG, run_plain, session_commands

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cmds():
    return session_commands(seed=41, steps=300)


def make_store(d, cmds, checkpoints=(100,)):
    store = sn.Store(d, CONFIG, sync="group", group_records=8)
    for i, cmd in enumerate(cmds):
        store.engine.submit(cmd)
        if i in checkpoints:
            store.checkpoint()
    store.close()
    return store


def run(*args):
    return CliRunner().invoke(main, ["store", *map(str, args)])


def _files(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_verify_a_healthy_store(tmp_path, cmds):
    make_store(tmp_path, cmds)
    result = run("verify", tmp_path)
    assert result.exit_code == 0, result.output
    assert "healthy" in result.output and f"recovers to command {len(cmds)}" in result.output
    assert "snapshot snapshot-00000000000000000101.pcs: command 101, ok" in result.output
    assert f"known to hold up to command {len(cmds)}" in result.output
    out = json.loads(run("verify", tmp_path, "--json").output)
    assert out["healthy"] and out["opens"] and out["last_seq"] == len(cmds)
    assert [(s["file"], s["first_seq"], s["last_seq"]) for s in out["segments"]] == [
        (sn.segment_name(1), 1, 101), (sn.segment_name(102), 102, len(cmds))]
    assert out["problems"] == [] and out["halted"] is None


def test_verify_reports_a_torn_tail_as_healthy(tmp_path, cmds):
    store = sn.Store(tmp_path, CONFIG, sync="always")
    for cmd in cmds[:50]:
        store.engine.submit(cmd)
    store.engine.journal.close()                # a crash: no clean close recorded
    seg = store.engine.journal.path
    seg.write_bytes(seg.read_bytes()[:-4])
    result = run("verify", tmp_path)
    assert result.exit_code == 0, result.output
    assert "torn tail: " in result.output and "recovers to command 49" in result.output


def test_verify_reports_a_damaged_snapshot_the_store_recovers_without(tmp_path, cmds):
    make_store(tmp_path, cmds, checkpoints=(100, 200))
    snap = tmp_path / sn.snapshot_name(201)
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0x01
    snap.write_bytes(bytes(data))
    result = run("verify", tmp_path)
    assert result.exit_code == 1
    assert f"snapshot {snap.name}: command 201, {snap}: damaged" in result.output
    assert f"recovers to command {len(cmds)} from {sn.snapshot_name(101)}" in result.output


def test_verify_then_repair_a_corrupt_store(tmp_path, cmds):
    """A flipped bit in the middle of the newest segment: verify names file, offset and commands
    and exits 1; repair after the last intact command keeps the cut bytes; the store then opens
    at that command in the uninterrupted run's state, and the client can resend the rest."""
    make_store(tmp_path, cmds)
    seg = tmp_path / sn.segment_name(102)
    data = seg.read_bytes()
    bad_seq = 200
    start = jr.Segment(data).end_of(bad_seq - 1)
    damaged = bytearray(data)
    damaged[start + 20] ^= 0x04
    seg.write_bytes(bytes(damaged))
    result = run("verify", tmp_path)
    assert result.exit_code == 1
    assert f"offset {start}" in result.output and f"command {bad_seq}" in result.output
    assert seg.name in result.output and "the store does not open" in result.output
    out = json.loads(run("verify", tmp_path, "--json").output)
    assert not out["healthy"] and out["problems"][0]["offset"] == start
    assert out["problems"][0]["seqs"] == [bad_seq, None]

    result = run("repair", tmp_path, "--truncate-after", bad_seq - 1)
    assert result.exit_code == 0, result.output
    kept = next(tmp_path.glob("repaired-*"))
    assert (kept / f"{seg.name}.after-{bad_seq - 1}").read_bytes() == bytes(damaged[start:])
    assert seg.read_bytes() == data[:start]
    assert run("verify", tmp_path).exit_code == 0
    store = sn.Store(tmp_path, CONFIG, sync="always")
    assert store.engine.ex.seq == bad_seq - 1
    assert store.engine.ex.state_hash() == run_plain(cmds[:bad_seq - 1])[0].state_hash()
    for cmd in cmds[bad_seq - 1:]:
        store.engine.submit(cmd)
    store.close()
    assert sn.Store(tmp_path, CONFIG).engine.ex.state_hash() == run_plain(cmds)[0].state_hash()


def test_repair_refuses_to_drop_snapshots_unasked_and_moves_them_when_asked(tmp_path, cmds):
    make_store(tmp_path, cmds, checkpoints=(100, 200))
    before = _files(tmp_path)
    result = run("repair", tmp_path, "--truncate-after", 150)
    assert result.exit_code != 0 and "snapshot-00000000000000000201.pcs" in result.output
    assert "nothing changed" in result.output and _files(tmp_path) == before
    result = run("repair", tmp_path, "--truncate-after", 150, "--move-snapshots", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["moved"] == [sn.segment_name(202), sn.snapshot_name(201)]
    kept = tmp_path / report["kept_in"]
    # nothing is lost: what is left plus what was kept is every byte there was
    after = _files(tmp_path)
    seg = sn.segment_name(102)
    assert after[seg] + after[f"{report['kept_in']}/{seg}.after-150"] == before[seg]
    assert {n: b for n, b in before.items() if n != seg and n != sn.MANIFEST} == {
        n.rsplit("/", 1)[-1]: b for n, b in after.items()
        if not n.endswith(".after-150") and n not in (seg, sn.MANIFEST)}
    assert (kept / sn.segment_name(202)).exists()
    store = sn.Store(tmp_path, CONFIG)
    assert store.engine.ex.seq == 150 and store.recovery.snapshot == sn.snapshot_name(101)
    assert store.engine.ex.state_hash() == run_plain(cmds[:150])[0].state_hash()
    store.close()


def test_repair_refuses_a_command_that_is_not_intact(tmp_path, cmds):
    make_store(tmp_path, cmds)
    before = _files(tmp_path)
    result = run("repair", tmp_path, "--truncate-after", len(cmds) + 5)
    assert result.exit_code != 0 and "not among its intact records" in result.output
    assert _files(tmp_path) == before


def test_verify_shows_a_halted_engine(tmp_path, cmds, monkeypatch):
    """The engine's fail-stop (Exchange.halted, set by the engine when applying a journaled
    command raised) is what recovery and verify report."""
    class Halted(msgspec.Struct):
        seq: int
        command: str
        cause: str

    make_store(tmp_path, cmds[:20], checkpoints=())
    monkeypatch.setattr(Exchange, "halted", Halted(17, "PlaceOrder", "ZeroDivisionError"),
                        raising=False)
    assert sn.recover(tmp_path, CONFIG)[1].halted == Halted(17, "PlaceOrder", "ZeroDivisionError")
    result = run("verify", tmp_path)
    assert result.exit_code == 1
    assert "ENGINE HALTED at command 17 (PlaceOrder): ZeroDivisionError" in result.output


def test_repair_takes_the_venue_of_the_store_with_config(tmp_path, cmds):
    """A store of another venue: repair on the built-in venue refuses and changes nothing; with
    that venue's --config it cuts, and says what the store recovers to on that venue."""
    other_toml = tmp_path / "other.toml"
    other_toml.write_text((ROOT / "docs" / "venue.toml").read_text().replace(
        "taker_fee = 50_000", "taker_fee = 60_000", 1))
    other = load_config(other_toml)
    assert config_digest(other) != config_digest(CONFIG)
    store_dir = tmp_path / "store"
    cmds = session_commands(seed=41, steps=120, config=other)
    store = sn.Store(store_dir, other, sync="group", group_records=8)
    for cmd in cmds:
        store.engine.submit(cmd)
    store.close()
    before = _files(store_dir)

    result = run("repair", store_dir, "--truncate-after", 100)
    assert result.exit_code == 1 and "nothing changed" in result.output
    assert f"{sn.segment_name(1)} written under another venue config than the built-in one" \
        in result.output
    assert _files(store_dir) == before

    result = run("repair", store_dir, "--truncate-after", 100, "--config", other_toml)
    assert result.exit_code == 0, result.output
    assert "the store recovers to command 100" in result.output
    reopened = sn.Store(store_dir, other)
    assert reopened.engine.ex.state_hash() == run_plain(cmds[:100], other)[0].state_hash()
    reopened.close()
    result = run("repair", store_dir, "--truncate-after", 90, "--config", other_toml, "--json")
    assert json.loads(result.output)["recovers_to"] == 90


def test_repair_says_when_the_store_still_does_not_open(tmp_path, cmds, monkeypatch):
    make_store(tmp_path, cmds)
    problem = sn.Problem("a damaged snapshot", str(tmp_path / "x"))
    monkeypatch.setattr(sn, "verify_store", lambda d, c: sn.StoreCheck(str(d), problems=[problem]))
    result = run("repair", tmp_path, "--truncate-after", 200)
    assert result.exit_code == 1
    assert "NOT HEALTHY yet: a damaged snapshot; the store does not open" in result.output
