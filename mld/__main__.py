import sys

from mld.cli import main

sys.exit(main())
