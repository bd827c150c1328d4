import sys

from sdxl_workloads.cli import main

sys.exit(main())
