"""Many runs at once, over the pipeline: `sweep` (strategies x seeds from a file, restartable),
`sweep_ray` (the same as Ray tasks) and `tune` (Optuna on val macro-F1)."""
