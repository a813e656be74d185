"""Dashboard: the landing page, every iteration at a glance and the strategies compared.

Imports iterations and review (metrics, charts, the latest labeler audits), accounts and the models; nothing
imports it but the URLs.
"""
