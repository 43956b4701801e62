import sys

from vitnas.cli import main

sys.exit(main())
