"""The run table: reading, checking and writing runs, language metadata, public-data adapters, held-out splits.

May import: `atlas_bayes.data` (shipped files) only; never laws' models, fitting or anything above.
"""
