"""What every layer shares, and nothing else: the generation spec and its camera grammar, the
normalised task status and failure kinds, the `Provider` protocol, the job records and status, the
`JobStore` protocol, the metrics port, and the domain errors. Imports nothing of the project (checked
by import-linter).
"""
