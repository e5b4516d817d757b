"""Tier evidence for certifiers: rulebooks, evaluation, carbon factors, signed evidence packs and their verification.

Nothing here imports FastAPI: `shopfloor evidence verify` runs with the KPI extra and the verify dependencies.
"""
