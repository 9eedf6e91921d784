"""`python -m prefalign ...` runs the `prefalign` command."""

import sys

from .cli import main

sys.exit(main())
