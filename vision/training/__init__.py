"""Library pieces of train_ssd.py: data order, LR schedule, optimizer groups, the epoch loop,
DDP helpers, resume rules and the run folder's files. No argument parsing here."""
