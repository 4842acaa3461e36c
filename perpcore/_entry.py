"""The `perpcore` script: the command line, or one line saying what to install for it.

The engine installs without the command line's libraries (`pip install perpcore`); its tables,
charts and benchmarks come with the cli extra. Only the standard library is imported here until
they are found."""
from __future__ import annotations

import sys
from importlib.util import find_spec

# the cli extra's modules, by the distribution that provides each
CLI_MODULES = {"click": "click", "rich": "rich", "matplotlib": "matplotlib",
               "hdrh": "hdrhistogram", "numpy": "numpy"}


def main() -> None:
    missing = [dist for module, dist in CLI_MODULES.items() if find_spec(module) is None]
    if missing:
        sys.exit(f"Error: perpcore's command line needs the cli extra ({', '.join(missing)} "
                 f"missing): pip install 'perpcore[cli]' (from a source tree: pip install "
                 f"'.[cli]')")
    from perpcore.cli import main as cli

    cli()
