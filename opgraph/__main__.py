"""``python -m opgraph``: the opgraph command (see opgraph.cli)."""

from opgraph.cli import main

raise SystemExit(main())
