"""The command-line layer: what the root-level scripts share (model files to nets, argparse pieces,
device choice). It sits above the library: it may import anything in ``vision``, and nothing in
``vision`` imports it (only the scripts, bench/ and tests do)."""
