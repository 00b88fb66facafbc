"""Rules every stage shares: errors, exit codes, configuration, safe text and files.

Imports no other bulk package (import-linter holds it), so any stage may use
it. Nothing is re-exported here: importing one rule must not load the others
(`bulk --help` imports the errors and exit codes only).
"""
