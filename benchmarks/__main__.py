"""``python -m benchmarks [scenario ...] [--quick]`` (see :mod:`benchmarks`)."""

from ._cli import main

raise SystemExit(main())
