"""`python -m pianocorpus` is the `pianocorpus` command."""

import sys

from pipelines.cli import main

sys.exit(main())
