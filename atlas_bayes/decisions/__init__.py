"""Decisions from fitted posteriors: comparing laws, transfer (BTS, matrix), crossover, compute-optimal size, the curse.

May import: laws, models, tables, fitting; never simulation, design or cli.
"""
