"""The replicated log's figures beside the local journal's, in one run on a local 3-node
JetStream cluster (perpcore.replication.bench; `perpcore bench replication` prints the table).

    python bench/bench_replication.py [--quick] [--json]
"""
import json
import sys

from perpcore.replication import bench


def main(argv: list[str]) -> None:
    report = bench.run(quick="--quick" in argv, progress=lambda what: print(what, file=sys.stderr))
    print(json.dumps(report, indent=1) if "--json" in argv else bench.table(report))


if __name__ == "__main__":
    main(sys.argv[1:])
