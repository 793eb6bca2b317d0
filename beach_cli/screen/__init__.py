"""The shared screen as beach keeps it: the recent output that redraws it (history.py, on the
host for late and lagging joiners, on a joiner to start its model), and a joiner's model of it
that predictive echo is checked against (model.py)."""
