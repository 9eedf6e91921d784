"""`python -m prefalign.cli`: kept so older scripts still run; `python -m prefalign` is the documented form."""

import sys

from . import main

sys.exit(main())
