"""Small data shipped with atlas_bayes (installed as `atlas_bayes.data`): language metadata, the
simulated example run table and the real bundled study.

May import: nothing (files only).
"""
