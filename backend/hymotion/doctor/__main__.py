"""`python -m hymotion.doctor`, the same as `hymotion doctor`."""

import sys

from .cli import main

sys.exit(main())
