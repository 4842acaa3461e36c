"""`perpcore replay`: journals reproduce every event and the final state hash, --verify catches a
store whose snapshots disagree with its journal, LOBSTER files replay from the command line, the
summary comes as tables or JSON and the events as a JSON-lines file."""
import json
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from perpcore import cli
from perpcore import journal as jr
from perpcore import messages as m
from perpcore import replay as rp
from perpcore import snapshot as sn
from test_journal import CONFIG, run_plain, session_commands

from real_data import DATA, needs_binance, needs_lobster


def make_store(directory, cmds, checkpoints=(), keep=2):
    store = sn.Store(directory, CONFIG, keep=keep, sync="none")
    for i, cmd in enumerate(cmds, start=1):
        store.engine.submit(cmd)
        if i in checkpoints:
            store.checkpoint()
    store.close()


def read_events(path):
    decode = msgspec.json.Decoder(m.Events).decode
    return [decode(line) for line in Path(path).read_bytes().splitlines()]


@pytest.fixture(scope="module")
def stream():
    cmds = session_commands(seed=31, steps=700)
    plain, events = run_plain(cmds)
    return cmds, plain, events


def test_journal_replay_reproduces_every_event(tmp_path, stream):
    cmds, plain, events = stream
    make_store(tmp_path / "store", cmds, checkpoints={300, 600}, keep=5)
    summary = rp.replay_journal(tmp_path / "store", verify=True, events_path=tmp_path / "ev.jsonl")
    assert summary.figures["started from"] == "an empty exchange"
    assert summary.messages == len(cmds) and summary.state_hash == plain.state_hash()
    assert read_events(tmp_path / "ev.jsonl") == events
    assert summary.trades == sum(type(e) is m.OrderFilled for e in events)
    assert [c.name for c in summary.checks] == ["snapshot 300", "snapshot 600", "recovery"]
    assert summary.ok


def test_a_pruned_store_replays_from_its_oldest_snapshot(tmp_path, stream):
    cmds, plain, events = stream
    make_store(tmp_path / "store", cmds, checkpoints={200, 400, 600}, keep=2)
    summary = rp.replay_journal(tmp_path / "store", verify=True, events_path=tmp_path / "ev.jsonl")
    assert summary.figures["started from"] == sn.snapshot_name(400)
    assert read_events(tmp_path / "ev.jsonl") == [e for e in events if e.seq > 400]
    assert summary.state_hash == plain.state_hash() and summary.ok


def test_verify_catches_a_snapshot_that_disagrees_with_the_journal(tmp_path, stream):
    cmds, plain, _ = stream
    make_store(tmp_path / "store", cmds, checkpoints={300}, keep=5)
    # the snapshot at 300 replaced by another state at the same sequence number
    other, _ = run_plain(cmds[:299] + [m.AdvanceClock(ts=10**15)])
    sn.write_snapshot(tmp_path / "store", other)
    summary = rp.replay_journal(tmp_path / "store", verify=True)
    failed = {c.name for c in summary.checks if not c.ok}
    assert failed == {"snapshot 300", "recovery"} and not summary.ok
    assert summary.state_hash == plain.state_hash()     # the full replay does not use it


def test_a_single_journal_file_and_its_torn_tail(tmp_path, stream):
    cmds, _, _ = stream
    path = tmp_path / "j.pcj"
    je = jr.JournaledExchange(jr.Exchange(CONFIG), jr.Journal(path, sn.config_digest(CONFIG),
                                                              sync="none"))
    for cmd in cmds[:100]:
        je.submit(cmd)
    je.close()
    path.write_bytes(path.read_bytes()[:-3])
    summary = rp.replay_journal(path, expect_hash=run_plain(cmds[:99])[0].state_hash())
    assert summary.messages == 99 and summary.ok
    assert "not replayed" in summary.figures["torn tail"]


def test_cli_journal_verify_json_and_exit_status(tmp_path, stream):
    cmds, plain, _ = stream
    make_store(tmp_path / "store", cmds, checkpoints={350})
    runner = CliRunner()
    result = runner.invoke(cli.main, ["replay", "journal", str(tmp_path / "store"), "--verify",
                                      "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ok"] and out["state_hash"] == plain.state_hash() and out["messages"] > 0
    result = runner.invoke(cli.main, ["replay", "journal", str(tmp_path / "store"),
                                      "--expect-hash", "0" * 64])
    assert result.exit_code == 1 and "DIFFERS" in result.output
    assert "final state hash" in result.output


@needs_lobster
def test_cli_lobster(tmp_path):
    runner = CliRunner()
    events = tmp_path / "trades.jsonl"
    result = runner.invoke(cli.main, ["replay", "lobster", str(DATA / "lobster"), "--json",
                                      "--events", str(events)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    by_level = {f["level"]: f for f in out["files"]}
    assert by_level[10]["reproduction"] >= 0.99 and by_level[1]["reproduction"] >= 0.99
    trades = read_events(events)
    assert len(trades) == out["trades"] == sum(f["engine_trades"] for f in out["files"])
    assert {t.symbol for t in trades} == {"AMZN"}
    table = runner.invoke(cli.main, ["replay", "lobster", str(DATA / "lobster" /
                                     "AMZN_2021-04-12_34200000_57600000_message_10.csv")])
    assert table.exit_code == 0 and "reproduced: same order, same size" in table.output


@needs_binance
def test_cli_binance_agreement_and_plots(tmp_path):
    pytest.importorskip("perpcore.binance")
    result = CliRunner().invoke(cli.main, ["replay", "binance", str(DATA / "binance"), "--symbol",
                                           "ETHUSDT", "--plots", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (eth,) = out["files"]
    # every bookTicker that shares an applied diff's update id shows the rebuilt top of book
    assert eth["agreement"] == 1.0 and int(eth["bookTicker compared"].split()[0]) > 500
    png = Path(eth["plot"])
    assert png.parent == tmp_path and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.name == "ethusdt_20240808.png"      # the capture's: another day's keeps its own
