"""`python -m atlas_bayes.cli`: the same as the `atlas-bayes` command."""

import sys

from atlas_bayes.cli import main

sys.exit(main())
