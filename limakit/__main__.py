import sys

from limakit.cli import main

sys.exit(main())
