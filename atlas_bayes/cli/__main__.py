"""`python -m atlas_bayes.cli`: the same as the `atlas-bayes` command."""

from atlas_bayes.cli import main

raise SystemExit(main())
