"""Fitting: run table -> law inputs -> NUTS or an approximation -> an ArviZ DataTree; diagnostics, summaries, posterior draws.

May import: laws, models, tables; never decisions, simulation, design or cli.
"""
