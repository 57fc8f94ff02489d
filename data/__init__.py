"""Small data shipped with atlas_bayes: language metadata and the (simulated) example run table."""
