"""Settings of the whole suite.

Hypothesis's per-example deadline is off: the suite runs on shared machines where another job can
stall an example for hundreds of milliseconds, and a test that fails for that says nothing about
the engine. What a property test asserts stays as strict; slowness is measured in bench/."""
from hypothesis import settings

settings.register_profile("perpcore", deadline=None)
settings.load_profile("perpcore")
