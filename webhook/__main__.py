"""`python -m webhook` is the `entourage` command."""

from webhook.cli import main

raise SystemExit(main())
