"""`python -m convmgr`."""

from convmgr.cli import main

raise SystemExit(main())
