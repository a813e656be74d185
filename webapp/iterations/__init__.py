"""Iterations: one round of RLAIF-V from creation to its review gate, training and evaluation, and how it is watched.

Owns creating an iteration, its settings (`config`), its lifecycle and the staff actions on it, sending its
jobs to the queues (`dispatch`), the counts kept as data changes, progress and ETAs, the metrics in words
and the charts, and the iteration pages and forms.

Imports accounts and the models. The work itself (the jobs a worker runs) lives in webapp/jobs, above this
room: the lifecycle sends jobs by name, never by importing them.
"""
