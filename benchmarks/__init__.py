"""`make bench`: the time and memory cost of each method and of the Ray/MLflow harness, as ratios
measured in one run."""
