"""Replay at scale (perpcore.fanout): independent inputs fanned out over a Dask cluster give the
sequential run's summaries and state hashes, merged in input order — through the Python API, the
command line and a separate process, on synthetic inputs (always there: generated LOBSTER files,
stress shocks) and on the real-data samples where they are.

One local cluster of two worker processes serves the module (it takes a second or two to start);
the command-line tests start their own, as the command does."""
import decimal
import json
import os
import random
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from perpcore import fanout
from perpcore import replay as rp
from perpcore import stress as st
from perpcore.cli import main
from real_data import BINANCE, DATA, needs_binance, needs_lobster

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"elapsed_s", "messages_per_s", "wall_s", "ran_on"}      # run metadata, not results


@pytest.fixture(scope="module")
def cluster():
    with fanout.pool(workers=2) as pool:
        yield pool


def results(summary: rp.Summary) -> dict:
    """A replay summary without its timings and where it ran: what must not depend on them."""
    out = {k: v for k, v in summary.as_dict().items() if k not in TIMING}
    out["files"] = [{k: v for k, v in f.items() if k not in TIMING} for f in summary.files]
    return out


def write_lobster(path: Path, seed: int, messages: int = 3_000) -> Path:
    """A LOBSTER message file of seeded order flow around 100.00: adds, partial cancels,
    deletes, and executions of the oldest order at a side's best price."""
    rng = random.Random(seed)
    resting: dict[int, list[int]] = {}          # id -> [direction, price, size], oldest first
    lines, t, next_id = [], 34_200.0, 1
    for _ in range(messages):
        t += rng.random() / 100
        r = rng.random()
        if r < 0.5 or len(resting) < 10:
            direction = rng.choice((1, -1))
            price = 1_000_000 - direction * rng.randint(1, 8) * 100
            size = rng.randint(1, 10) * 100
            resting[next_id] = [direction, price, size]
            lines.append((1, next_id, size, price, direction))
            next_id += 1
        elif r < 0.7:
            order = rng.choice(sorted(resting))
            direction, price, size = resting.pop(order)
            lines.append((3, order, size, price, direction))
        elif r < 0.8:
            order = rng.choice(sorted(resting))
            direction, price, size = resting[order]
            if size > 100:
                resting[order][2] -= 100
                lines.append((2, order, 100, price, direction))
        else:
            direction = rng.choice((1, -1))
            side = [(o, v) for o, v in resting.items() if v[0] == direction]
            if not side:
                continue
            best = (max if direction == 1 else min)(v[1] for _, v in side)
            order, (_, price, size) = next((o, v) for o, v in side if v[1] == best)
            done = min(size, rng.randint(1, 10) * 100)
            if done == size:
                del resting[order]
            else:
                resting[order][2] -= done
            lines.append((4, order, done, price, direction))
    path.write_text("".join(f"{t + i * 1e-6:.9f},{k},{o},{s},{p},{d}\n"
                            for i, (k, o, s, p, d) in enumerate(lines)))
    return path


@pytest.fixture(scope="module")
def lobster_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lobster")
    for day, seed in (("2020-01-02", 1), ("2020-01-03", 2), ("2020-01-06", 3)):
        write_lobster(folder / f"SYN_{day}_34200000_57600000_message_10.csv", seed)
    return folder


# ---- the Python API ---------------------------------------------------------------------------

def test_synthetic_lobster_days_fanned_out_equal_the_sequential_replay(cluster, lobster_dir,
                                                                       tmp_path):
    alone = rp.replay_lobster([lobster_dir], events_path=tmp_path / "alone.jsonl")
    spread = rp.replay_lobster([lobster_dir], events_path=tmp_path / "spread.jsonl",
                               pool=cluster)
    assert spread.ran_on == "2 local Dask worker processes" and alone.ran_on.startswith("seq")
    assert results(spread) == results(alone)
    # the flow is not trivial: trades in every day, each day its own final book
    hashes = [f["book_hash"] for f in alone.files]
    assert len(set(hashes)) == 3 and all(f["engine_trades"] > 100 for f in alone.files)
    assert alone.state_hash == fanout.combined_hash(hashes)
    # merged in input order, the events too
    assert [Path(f["path"]).name[4:14] for f in spread.files] == ["2020-01-02", "2020-01-03",
                                                                 "2020-01-06"]
    events = (tmp_path / "spread.jsonl").read_bytes()
    assert events == (tmp_path / "alone.jsonl").read_bytes()
    assert events.count(b"\n") == alone.trades
    # the same order of inputs reversed: each input's result is its own, the merge follows
    backwards = rp.replay_lobster(sorted(lobster_dir.glob("*.csv"), reverse=True), pool=cluster)
    assert [f["book_hash"] for f in backwards.files] == hashes[::-1]
    assert backwards.state_hash != alone.state_hash


def test_both_pools_run_the_same_task_to_the_same_result(cluster, lobster_dir):
    calls = [(str(p),) for p in sorted(lobster_dir.glob("*.csv"))]
    here = fanout.Sequential().map(rp.lobster_file, calls, events=True)
    there = cluster.map(rp.lobster_file, calls, events=True)
    assert [d.result for d in there] == [d.result for d in here]      # Replayed structs
    assert all(d.elapsed_s > 0 for d in here + there)
    # ... there in the cluster's two worker processes, not this one
    pids = {d.result for d in cluster.map(os.getpid, [()] * 8)}
    assert os.getpid() not in pids and len(pids) <= 2


def test_stress_shocks_fanned_out_equal_the_sequential_run(cluster):
    ex = st.population(accounts=150, seed=3)
    paths = st.shock_paths(-30, 30, 15, steps=4, flash=-30)
    # the decimal context ccxt leaves in a process (the gateway tests run it in this one): the
    # report's money text must not depend on it (+15% explains a 654,950.525 takeover)
    with decimal.localcontext(rounding=decimal.ROUND_HALF_UP):
        alone = st.run(ex, "150 accounts", paths)
    spread = st.run(ex, "150 accounts", paths, pool=cluster)

    for one, other in zip(alone.shocks, spread.shocks, strict=True):
        one, other = asdict(one), asdict(other)
        differ = {k: (one[k], other[k]) for k in one if k != "elapsed_s" and one[k] != other[k]}
        assert not differ, f"shock {one['name']}: sequential vs fanned out {differ}"
    assert [r.name for r in spread.shocks] == [name for name, _ in paths]     # input order
    hashes = [r.state_hash for r in alone.shocks]
    assert len(set(hashes)) == len(paths) and all(len(h) == 64 for h in hashes)
    assert sum(r.liquidated for r in alone.shocks) > 0
    assert spread.ran_on == "2 local Dask worker processes"


def test_maps_after_maps_of_the_same_shared_value(cluster):
    """Each map places its shared values under keys of its own: under the content's key, the
    release of an earlier map's copy raced this one's (its tasks lost their data and waited)."""
    shared = b"x" * 100_000
    for _ in range(20):
        assert [d.result for d in cluster.map(len, [()] * 4, shared=(shared,))] == [100_000] * 4


def test_an_existing_cluster_by_its_scheduler_address(cluster, lobster_dir):
    address = cluster.client.scheduler.address
    with fanout.pool(scheduler=address) as pool:
        assert pool.description == f"the Dask cluster at {address}"
        spread = rp.replay_lobster([lobster_dir], pool=pool)
    assert results(spread) == results(rp.replay_lobster([lobster_dir]))


def test_a_failing_task_raises_its_own_error(cluster, tmp_path):
    bad = tmp_path / "BAD_2020-01-02_34200000_57600000_message_10.csv"
    bad.write_text("34200.5,1,an id,100,1000000,1\n")
    with pytest.raises(ValueError, match="not a LOBSTER message file"):
        rp.replay_lobster([bad], pool=cluster)


def test_the_cluster_is_closed_on_an_interrupt():
    with pytest.raises(KeyboardInterrupt):
        with fanout.pool(workers=1) as pool:
            client = pool.client
            assert client.submit(sum, [1, 2]).result() == 3
            raise KeyboardInterrupt
    assert client.status == "closed" and client.cluster.status.name == "closed"


def test_pool_arguments():
    with pytest.raises(ValueError, match="not both"):
        with fanout.pool(workers=2, scheduler="tcp://127.0.0.1:1"):
            pass
    with pytest.raises(ValueError, match="not -1"):
        with fanout.pool(workers=-1):
            pass
    with fanout.pool() as pool:
        assert isinstance(pool, fanout.Sequential)


def test_dask_is_imported_only_when_a_cluster_is_asked_for():
    code = ("import sys, perpcore, perpcore.cli, perpcore.fanout, perpcore.replay, "
            "perpcore.stress\n"
            "from perpcore import fanout\n"
            "with fanout.pool() as pool: pool.map(len, [('ab',)])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert done.stdout.strip() == "[]"


@needs_lobster
def test_real_lobster_files_fanned_out(cluster, tmp_path):
    alone = rp.replay_lobster([DATA / "lobster"], events_path=tmp_path / "alone.jsonl")
    spread = rp.replay_lobster([DATA / "lobster"], events_path=tmp_path / "spread.jsonl",
                               pool=cluster)
    assert results(spread) == results(alone) and len(alone.files) == 2
    assert (tmp_path / "spread.jsonl").read_bytes() == (tmp_path / "alone.jsonl").read_bytes()
    assert alone.files[0]["level"] == 1 and alone.files[0]["reproduction"] >= 0.99


@needs_binance
def test_real_binance_symbols_fanned_out(cluster, tmp_path):
    alone = rp.replay_binance(BINANCE, plots_dir=tmp_path / "alone")
    spread = rp.replay_binance(BINANCE, plots_dir=tmp_path / "spread", pool=cluster)
    strip = {"plot", "plots"}
    one, other = results(alone), results(spread)
    for out in (one, other):
        out["files"] = [{k: v for k, v in f.items() if k not in strip} for f in out["files"]]
        out["figures"].pop("plots")
    assert other == one
    assert [f["symbol"] for f in spread.files] == ["BTCUSDT", "ETHUSDT"]
    assert len({f["state_hash"] for f in alone.files}) == 2
    assert all(Path(f["plot"]).stat().st_size > 10_000 for f in spread.files)


# ---- the command line -------------------------------------------------------------------------

def cli_json(args: list[str]) -> dict:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_replay_lobster_with_two_workers(lobster_dir, tmp_path):
    alone = cli_json(["replay", "lobster", str(lobster_dir), "--json",
                      "--events", str(tmp_path / "alone.jsonl")])
    spread = cli_json(["replay", "lobster", str(lobster_dir), "--json", "--workers", "2",
                       "--events", str(tmp_path / "spread.jsonl")])
    assert spread["ran_on"] == "2 local Dask worker processes"
    for out in (alone, spread):
        for key in TIMING:
            out.pop(key)
        for f in out["files"]:
            f.pop("elapsed_s"), f.pop("messages_per_s")
    assert spread == alone and len(alone["files"]) == 3
    assert (tmp_path / "spread.jsonl").read_bytes() == (tmp_path / "alone.jsonl").read_bytes()


def test_cli_stress_with_two_workers_as_a_process(tmp_path):
    """The installed command's way: a fresh interpreter whose cluster's workers import perpcore
    from the same tree."""
    def run(*extra: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", "from perpcore.cli import main; main()", "stress",
             "--accounts", "120", "--shocks=-20:20:10", "--path-steps", "4", "--flash", "-20",
             "--out", str(tmp_path), "--json", *extra],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    alone, spread = run(), run("--workers", "2")
    assert spread["ran_on"] == "2 local Dask worker processes"
    for out in (alone, spread):
        out.pop("elapsed_s"), out.pop("ran_on"), out.pop("chart"), out.pop("page")
        for shock in out["shocks"]:
            shock.pop("elapsed_s")
    assert spread == alone and len(alone["shocks"]) == 5


def test_cli_replay_over_an_existing_scheduler(cluster, lobster_dir):
    address = cluster.client.scheduler.address
    out = cli_json(["replay", "lobster", str(lobster_dir), "--json", "--scheduler", address])
    assert out["ran_on"] == f"the Dask cluster at {address}"
    assert out["state_hash"] == rp.replay_lobster([lobster_dir]).state_hash


def test_cli_refuses_to_split_a_journal_and_two_pools(lobster_dir, tmp_path):
    result = CliRunner().invoke(main, ["replay", "journal", str(tmp_path), "--workers", "2"])
    assert result.exit_code == 1
    assert result.output == ("Error: a journal is one ordered log of one venue: its commands "
                             "are replayed in order on one engine, never split across workers "
                             "(--workers and --scheduler fan out lobster files, binance symbols "
                             "and stress shocks)\n")
    result = CliRunner().invoke(main, ["replay", "lobster", str(lobster_dir), "--workers", "2",
                                       "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2 and "not both" in result.output
    help_text = CliRunner().invoke(main, ["replay", "--help"]).output
    assert "never split" in " ".join(help_text.split())
