"""Issue 12 item 4: the hostile-input fuzzer's rate. 1,000,000 commands with hostile fields
(tests/hostile.py: wrong types, values past 64 bits, enum members of other enums, text too long or
not encodable, mixed with plausible values so that commands reach every stage) go through a venue
that checks every outcome: no exception, no halt; a rejection has a code and a reason and leaves
state_hash() unchanged; an accepted command leaves a state that hashes and audits. A case that
breaks any of these fails the benchmark. The rate (checks included) is target hostile.fuzz."""
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hostile import HostileVenue, hostile_command  # noqa: E402 (the tests' support module)


def test_hostile_fuzzer(benchmark, target, scaled):
    n = scaled(1_000_000)
    venues = []

    def run():
        venue, rng = HostileVenue(), random.Random(1)
        venues.append(venue)
        for _ in range(n):
            venue.submit(hostile_command(rng, venue.ex.clock))

    benchmark.pedantic(run, rounds=1, iterations=1)
    venue = venues[-1]
    assert venue.cases == n and venue.rejected + venue.accepted == n
    benchmark.extra_info.update(cases=n, rejected=venue.rejected, accepted=venue.accepted,
                                raises=0, changed_on_reject=0)
    target("hostile.fuzz", commands=n)
