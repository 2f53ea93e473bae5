"""``python -m hymotion.service``: what the add-on starts (the same as ``hymotion serve``)."""

import sys

from .command import main

sys.exit(main())
