#!/usr/bin/env python
"""Restore images with a zero-shot method or a trained model.

``python sample.py test --config configs/experiment/demo.yaml`` restores a datamodule with
references (metrics are computed); ``predict`` restores inputs without references.
Subcommands: test, predict (``python sample.py --help``). See README.md.
"""

import sys

from lit_restore.cli import SampleCLI, run_cli

if __name__ == "__main__":
    sys.exit(run_cli(SampleCLI))
