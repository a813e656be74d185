"""Dashboard: the landing page, led by the figure that matters, every iteration at a glance, strategies compared.

Imports iterations and review (metrics, charts, the latest labeler audits), accounts and the models; nothing
imports it but the URLs.
"""
