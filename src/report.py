"""Tables and plots of a sweep: every results.json below the given directories.

python src/report.py logs/multiruns/2024-05-01_12-00-00
python src/report.py logs/multiruns/A logs/optuna/tau_default --out reports/tau --wandb
"""

import sys

from oodlab.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
