"""The command line's edges: every option checked (a one-line error, exit status 2), a wrong or
damaged file a one-line error (exit status 1) rather than a traceback, which `perpcore --debug`
shows; runs with different options keep their own output files. Through click's CliRunner, and
twice as a real process."""
import gzip
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

import perpcore
from perpcore import journal as jr
from perpcore import simulate as sim
from perpcore import snapshot as sn
from perpcore.cli import main
from test_journal import session_commands
from test_replay import make_store


def one_line_error(result, status: int) -> str:
    """The error line of a run that must fail with `status`, no traceback and nothing raised."""
    assert result.exit_code == status, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    return line


@pytest.mark.parametrize("args, says", [
    (["simulate", "--steps", "-5"], "'--steps': -5 is not in the range x>=1"),
    (["simulate", "--steps", "0"], "'--steps': 0 is not in the range x>=1"),
    (["stress", "--path-steps", "0"], "'--path-steps': 0 is not in the range x>=1"),
    (["stress", "--accounts", "-1"], "'--accounts': -1 is not in the range x>=1"),
    (["stress", "--from-simulate", "0"], "'--from-simulate': 0 is not in the range x>=1"),
    (["stress", "--shocks", "10:-10:5"], "'10:-10:5': low 10 is above high -10"),
    (["stress", "--shocks", "1:2"], "'1:2' is not low:high:step in whole percent"),
    (["stress", "--shocks", "a:b:c"], "'a:b:c' is not low:high:step in whole percent"),
    (["stress", "--shocks", "1.5:2:1"], "'1.5:2:1' is not low:high:step in whole percent"),
    (["stress", "--shocks", "0:10:0"], "'0:10:0': the step must be at least 1"),
    (["stress", "--shocks=-100:0:10"], "-100 is not in the range -99<=x<=1000"),
    (["stress", "--flash", "-100"], "'--flash': -100 is not in the range -99<=x<=1000"),
    (["stress", "--shocks", "0:0:1", "--flash", "0"], "nothing to run"),
    (["bench", "--seed", "-1"], "'--seed': -1 is not in the range x>=0"),
    (["replay", "journal", ".", "--expect-hash", "abc"], "'abc' is not a state hash"),
])
def test_every_option_is_checked_before_anything_runs(args, says):
    assert says in one_line_error(CliRunner().invoke(main, args), 2)


def test_the_environment_variable_is_checked_as_the_option_is():
    result = CliRunner().invoke(main, ["simulate"], env={"PERPCORE_SIMULATE_STEPS": "-1"})
    assert "-1 is not in the range x>=1" in one_line_error(result, 2)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("perpcore notes, not data\n" * 20)
    return path


def _captures(root: Path, usdm: bytes, spot: bytes) -> Path:
    """A data directory in the layout replay binance reads, holding the given file contents."""
    for market, content in (("usdm", usdm), ("spot", spot)):
        (root / market).mkdir(parents=True)
        (root / market / "btcusdt_20240808.gz").write_bytes(content)
    return root


def _lines(n: int) -> bytes:
    return b"".join(b'%d {"stream":"btcusdt@trade","data":{}}\n' % i for i in range(n))


@pytest.mark.parametrize("case, says", [
    ("lobster text", "notes.csv: not a LOBSTER message file (could not convert string"),
    ("lobster empty dir", "no LOBSTER message files (*_message_*.csv) in "),
    ("binance empty dir", "no Binance captures under"),
    ("binance unknown symbol", "no USDⓈ-M and spot captures of FOOUSDT under"),
    ("binance truncated gz", "btcusdt_20240808.gz: not a complete gzip file (Compressed file "
                             "ended before the end-of-stream marker was reached)"),
    ("binance not gz", "btcusdt_20240808.gz: not a complete gzip file (Not a gzipped file"),
    ("binance not a capture", "btcusdt_20240808.gz: not a Binance capture"),
    ("journal text", "notes.csv: not a perpcore journal segment of this format"),
    ("journal empty dir", ": no journal segments"),
    ("store not a store", "is not a perpcore store: no manifest, snapshots or journal segments"),
])
def test_a_wrong_file_is_one_line(tmp_path, text_file, case, says):
    empty = tmp_path / "empty"
    empty.mkdir()
    plots = ["--plots", str(tmp_path / "plots")]
    data = tmp_path / "data"
    args = {        # lambdas: only the case's own files are made
        "lobster text": lambda: ["replay", "lobster", str(text_file)],
        "lobster empty dir": lambda: ["replay", "lobster", str(empty)],
        "binance empty dir": lambda: ["replay", "binance", str(empty), *plots],
        "binance unknown symbol": lambda: ["replay", "binance", str(_captures(
            data, _lines(3), _lines(3))), "--symbol", "FOOUSDT", *plots],
        "binance truncated gz": lambda: ["replay", "binance", str(_captures(
            data, gzip.compress(_lines(2000))[:-100], gzip.compress(_lines(3)))), *plots],
        "binance not gz": lambda: ["replay", "binance", str(_captures(
            data, _lines(3), _lines(3))), *plots],
        "binance not a capture": lambda: ["replay", "binance", str(_captures(
            data, gzip.compress(b"hello world\n"), gzip.compress(_lines(3)))), *plots],
        "journal text": lambda: ["replay", "journal", str(text_file)],
        "journal empty dir": lambda: ["replay", "journal", str(empty)],
        "store not a store": lambda: ["store", "verify", str(empty)],
    }[case]()
    assert says in one_line_error(CliRunner().invoke(main, args), 1)


def test_debug_shows_the_traceback(text_file):
    result = CliRunner().invoke(main, ["--debug", "replay", "journal", str(text_file)])
    assert result.exit_code == 1 and isinstance(result.exception, jr.JournalError)


def test_a_bug_is_one_line_too_and_says_how_to_see_it(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("an invariant\nbroke")

    monkeypatch.setattr(sim, "run", broken)
    line = one_line_error(CliRunner().invoke(main, ["simulate", "--json"]), 1)
    assert line == ("Error: unexpected RuntimeError: an invariant broke (perpcore --debug ... "
                    "shows the traceback)")


def test_verify_reports_a_damaged_snapshot_as_a_failed_check(tmp_path):
    make_store(tmp_path / "store", session_commands(seed=31, steps=400), checkpoints={300}, keep=5)
    snapshot = tmp_path / "store" / sn.snapshot_name(300)
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["replay", "journal", str(tmp_path / "store"), "--verify",
                                       "--json"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert not checks["snapshot 300"]["ok"]
    assert checks["snapshot 300"]["detail"].startswith("the snapshot cannot be read: ")
    assert sn.snapshot_name(300) in checks["snapshot 300"]["detail"]


def test_runs_with_different_options_keep_their_own_files(tmp_path):
    outputs = []
    for shocks in ("-20:20:40", "-10:10:20"):
        result = CliRunner().invoke(main, ["stress", "--accounts", "60", f"--shocks={shocks}",
                                           "--flash", "0", "--path-steps", "2",
                                           "--out", str(tmp_path), "--json"])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"stress-60-seed1-shocks{s}-flash0-steps2.{ext}"
        for s in ("-10to10by20", "-20to20by40") for ext in ("html", "json", "png")]
    for out in outputs:
        assert json.loads(Path(out["chart"]).with_suffix(".json").read_text())["shocks"] == \
            out["shocks"]


def _perpcore(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """perpcore as a user runs it: its own process, this tree's package first on the path."""
    env = {**os.environ, "PYTHONPATH": str(Path(perpcore.__file__).parents[1])}
    return subprocess.run([sys.executable, "-c", "from perpcore.cli import main; main()", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_as_a_process_a_wrong_file_is_one_line_on_stderr(tmp_path, text_file):
    done = _perpcore("replay", "journal", text_file.name, cwd=tmp_path)
    # stdout holds only the line the progress bar leaves as it closes
    assert done.returncode == 1 and done.stdout.strip() == ""
    assert done.stderr == ("Error: notes.csv: not a perpcore journal segment of this format "
                           "(magic b'perpcore')\n")
    done = _perpcore("--debug", "replay", "journal", text_file.name, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback") and "JournalError" in done.stderr


def test_as_a_process_a_bad_number_is_a_usage_error(tmp_path):
    done = _perpcore("stress", "--path-steps", "0", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == ("Error: Invalid value for '--path-steps': 0 is not in "
                                            "the range x>=1.")
    assert not any(tmp_path.iterdir())


# ---- --config FILE wherever a venue is built ---------------------------------------------------

DOCS_VENUE = Path(__file__).resolve().parents[1] / "docs" / "venue.toml"


@pytest.fixture
def cheap_venue(tmp_path):
    """The built-in venue with free trading, as a JSON config file."""
    cfg = perpcore.default_config()
    free = {s: msgspec.structs.replace(spec, maker_fee=0, taker_fee=0)
            for s, spec in cfg.instruments.items()}
    path = tmp_path / "cheap.json"
    path.write_bytes(msgspec.json.encode(msgspec.structs.replace(cfg, instruments=free)))
    return path


def _simulated(*args):
    result = CliRunner().invoke(main, ["simulate", "--steps", "2000", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_simulate_runs_on_the_config_file(cheap_venue):
    default = _simulated()
    assert _simulated("--config", str(DOCS_VENUE))["state_hash"] == default["state_hash"]
    cheap = _simulated("--config", str(cheap_venue))
    assert cheap["state_hash"] != default["state_hash"] and Decimal(cheap["fees"]) == 0


def test_stress_runs_on_the_config_file_and_names_its_files_after_it(tmp_path, cheap_venue):
    out = tmp_path / "out"
    args = ["stress", "--accounts", "60", "--shocks=-20:-20:1", "--flash", "0", "--path-steps",
            "2", "--out", str(out), "--json"]
    for extra in ([], ["--config", str(cheap_venue)]):
        result = CliRunner().invoke(main, args + extra)
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.json")) == [
        "stress-60-seed1-shocks-20to-20by1-flash0-steps2-cheap.json",
        "stress-60-seed1-shocks-20to-20by1-flash0-steps2.json"]


def test_a_store_of_another_venue_is_replayed_and_verified_with_its_config(tmp_path,
                                                                           cheap_venue):
    from perpcore.config import load_config

    cfg = load_config(cheap_venue)
    store = sn.Store(tmp_path / "store", cfg, sync="none")
    for cmd in session_commands(seed=5, steps=300, config=cfg):
        store.engine.submit(cmd)
    store.checkpoint()
    store.close()
    directory = str(tmp_path / "store")
    line = one_line_error(CliRunner().invoke(main, ["replay", "journal", directory]), 1)
    assert "written under a different venue config" in line
    result = CliRunner().invoke(main, ["replay", "journal", directory, "--verify", "--json",
                                       "--config", str(cheap_venue)])
    assert result.exit_code == 0, result.output
    assert all(c["ok"] for c in json.loads(result.stdout)["checks"])
    assert CliRunner().invoke(main, ["store", "verify", directory]).exit_code == 1
    result = CliRunner().invoke(main, ["store", "verify", directory, "--config", str(cheap_venue)])
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "healthy"


@pytest.mark.parametrize("command", [["simulate"], ["stress"], ["replay", "journal", "."],
                                     ["store", "verify", "."], ["serve", "store"]])
def test_a_bad_config_file_is_a_one_line_usage_error(tmp_path, command):
    bad = tmp_path / "venue.toml"
    bad.write_text(DOCS_VENUE.read_text().replace("max_qty = 1_000_000", 'max_qty = "many"', 1))
    line = one_line_error(CliRunner().invoke(main, [*command, "--config", str(bad)]), 2)
    assert line == (f"Error: Invalid value for '--config': {bad}: instruments.BTC-PERP.max_qty: "
                    f"Expected `int`, got `str`")


def test_as_a_process_a_missing_config_file_is_a_usage_error(tmp_path):
    done = _perpcore("simulate", "--config", "nowhere.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == ("Error: Invalid value for '--config': File "
                                            "'nowhere.toml' does not exist.")


def test_a_store_of_a_preset_is_replayed_verified_and_repaired_with_its_venue(tmp_path):
    from perpcore.venues import venue

    cfg = venue("bitmex")
    store = sn.Store(tmp_path / "store", cfg, sync="none")
    for cmd in session_commands(seed=5, steps=300, config=cfg):
        store.engine.submit(cmd)
    store.close()
    directory = str(tmp_path / "store")
    assert CliRunner().invoke(main, ["store", "verify", directory]).exit_code == 1
    result = CliRunner().invoke(main, ["replay", "journal", directory, "--json", "--venue",
                                       "bitmex"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["store", "verify", directory, "--venue", "bitmex"])
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "healthy"
    line = one_line_error(CliRunner().invoke(main, ["store", "repair", directory,
                                                    "--truncate-after", "10", "--venue",
                                                    "hyperliquid"]), 1)
    assert "written under another venue config than the hyperliquid preset" in line


@pytest.mark.parametrize("command", [["simulate"], ["stress"], ["replay", "journal", "."],
                                     ["store", "verify", "."], ["serve", "store"],
                                     ["compare", "journal", "."]])
def test_venue_and_config_together_are_a_usage_error(command):
    line = one_line_error(CliRunner().invoke(main, [*command, "--venue", "bitmex", "--config",
                                                    str(DOCS_VENUE)]), 2)
    assert line == "Error: give --config FILE or --venue NAME, not both"
