"""``python -m worldstream`` runs the command-line interface."""

from worldstream.cli import main

raise SystemExit(main())
