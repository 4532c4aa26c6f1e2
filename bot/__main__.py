"""`python -m bot`: the same entry point as the `framecast` console script."""

from bot.app import main

raise SystemExit(main())
