"""Simulated studies with known truths: run designs shaped like the paper's, laws run forward, transfer, crossover and capacity studies.

May import: laws, models, tables, fitting, decisions; never design or cli.
"""
