"""`perpcore bench replication`'s measurements run, at a tiny size, on the module's cluster (the
figures themselves are the benchmark's, never asserted here)."""
from perpcore.replication import bench

from .conftest import logged_commands, read_log


def test_the_replication_benchmark_runs_at_a_tiny_size(cluster, tmp_path):
    setup, cmds = bench._workload(300)
    assert bench.append_rate(cluster.url, "bench-single", cmds[:50], pack=1) > 0
    assert bench.append_rate(cluster.url, "bench-packed", cmds, pack=64) > 0
    assert [len(e.commands) for _, e in read_log(cluster.url, "bench-single")] == [1] * 50
    assert [c for _, c in logged_commands(cluster.url, "bench-packed")] == cmds
    assert bench.pipeline_rate(tmp_path / "p", setup, cmds, cluster.url, "bench-pipeline",
                               callers=8) > 0
    end = len(setup) + len(cmds)
    assert bench.catch_up_rate(tmp_path / "c", cluster.url, "bench-pipeline", end) > 0
    paced = bench.paced_latency(tmp_path / "l", setup, cmds[:100], 500, cluster.url,
                                "bench-paced")
    assert 0 < paced["ack_p50_ms"] <= paced["ack_p99_ms"]
    assert 0 < paced["applied_p50_ms"] <= paced["applied_p99_ms"]
    alone = bench.stream_latency(cluster.url, "bench-alone", 500, 50)
    assert 0 < alone["p50_ms"] <= alone["p99_ms"]
